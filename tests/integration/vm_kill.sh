#!/usr/bin/env bash
# kill -9 of a VM's endpoint, three times, then a reload that changes one of its settings,
# while a namespace pings the QEMU guest behind it (TCG, the Linux virtio-net driver, QEMU
# reconnect=1). Each time vswitchd restarts the endpoint; the successor sees that its
# predecessor had a front-end attached and keeps the frames for the guest in their
# channel until QEMU has reconnected (up to fabric.stall_timeout_ms), instead of dropping
# them as guest_not_ready. Accounted with
# counters outside the switch and after the fact:
#   - neither endpoint counts a drop, for any reason;
#   - every frame the namespace sent reached the guest's driver (its rx_packets) exactly
#     once, the frames in flight at each kill included (the delivery journal), and every
#     frame the guest's driver sent reached the namespace (the TAP's rx_packets) at most
#     once, all but at most one per restart: QEMU itself completes, empty, every chain
#     left in the guest's transmit queue when its vhost-user back-end goes away (it sets
#     the link down and drops the queue's data), and the guest counts those as sent;
#   - the guest was not rebooted and its link came back each time.
# Ping's own loss is reported, not asserted: a Linux guest answers the requests that
# waited for it before it has seen its link come back, and drops those replies itself.
source "$(dirname "$0")/lib.sh"
require_root
source "$HERE/vm_env.sh"
KILLS=3
add_netns vsit-kn vsit-kn 02:00:00:00:1c:01 10.82.0.1
cat >"$WORK/vm-kill.toml" <<TOML
[switch]
name = "itvmkill"
[fabric]
ring_bytes = 1048576
# 10 s: QEMU reconnects about 1 s after the hang-up, then negotiates next to a TCG vCPU;
# a shorter wait could run out on a loaded machine and drop frames the test counts.
stall_timeout_ms = 10000
[[endpoint]]
name = "ns"
mac = "02:00:00:00:1c:01"
frontend = "tap"
[endpoint.tap]
ifname = "vsit-kn"
netns = "vsit-kn"
[[endpoint]]
name = "vm1"
mac = "52:54:00:00:1c:02"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/vm1.sock"
queue_size = 256
TOML
start_daemon "$WORK/vm-kill.toml"
# The guest prints its driver's counters every second, from then on.
vm_boot "$WORK" vm1 52:54:00:00:1c:02 10.82.0.2 'echo VMTEST-UP
s=/sys/class/net/eth0
while true; do echo VMTEST-STATS $(cat $s/statistics/rx_packets $s/statistics/tx_packets $s/carrier_changes $s/carrier); sleep 1; done' \
  "$(vhost_netdev "$WORK/vm1.sock")" 2>"$WORK/vm1.qemu"
QEMUS+=("$VM_PID")
wait_for 300 "the guest to boot" grep -a -q VMTEST-UP "$WORK/vm1.console"
wait_for 60 "the guest to answer" ip netns exec vsit-kn ping -c 1 -W 1 10.82.0.2

# Pings every 2 ms until stopped (after the last restart): the traffic each restart meets.
ip netns exec vsit-kn ping -i 0.002 -W 5 -q 10.82.0.2 >"$WORK/ping.out" 2>&1 &
pinger=$!
trap 'kill -INT $pinger 2>/dev/null || true; stop_guests; cleanup' EXIT
vm1_state() { ctl ports --json | python3 -c "
import json, sys
p = next(p for p in json.load(sys.stdin)['ports'] if p['name'] == 'vm1')
print(p['state'], p['pid'], p['restarts'])"; }
connects() { grep -c "vhost-user front-end connected" "$WORK/vswitchd.log"; }
# Frames reach the guest through vm1 again: 100 more delivered than when called (its
# counters carry on across restarts), so the guest's receive queue runs.
flowing() {
  local d; d=$(stat vm1 'e["tx_frames"]')
  wait_for 30 "frames to reach the guest ($1)" stat_is vm1 'e["tx_frames"]' -gt $((d + 100))
}
restarted() {  # restarted K VICTIM: vm1 up again, its Kth restart, another pid
  wait_for 20 "vm1 restarted ($1)" bash -c "[[ \$(\"$BIN/vswitchctl\" --config '$CONFIG' ports --json | python3 -c \"
import json, sys
p = next(p for p in json.load(sys.stdin)['ports'] if p['name'] == 'vm1')
print(p['state'] == 'up' and p['restarts'] == $2 and p['pid'] != $3)\") == True ]]"
}
reconnected() {  # reconnected BEFORE WHAT: QEMU connected again since BEFORE connections
  wait_for 30 "QEMU to reconnect after $2" bash -c "(( \$(grep -c 'vhost-user front-end connected' '$WORK/vswitchd.log') > $1 ))"
}
flowing "before the first kill"
for k in $(seq $KILLS); do
  sleep 2  # part of the scenario: traffic flows a while between restarts
  read -r _ victim _ < <(vm1_state)
  before=$(connects)
  kill -9 "$victim"
  restarted "after kill $k" "$k" "$victim"
  reconnected "$before" "kill $k"
  flowing "after kill $k"
done
# A reload restarts vm1 on a new poll_us (SIGTERM: it stops with its guest attached).
sleep 2
before=$(connects)
sed -i '/^name = "vm1"/a poll_us = 20' "$WORK/vm-kill.toml"
out=$(ctl reload) || fail "vswitchctl reload exited $?: $out"
[[ $out == *"restarted on the new settings and up: vm1"* ]] || fail "reload said: $out"
reconnected "$before" "the reload"
flowing "after the reload"
kill -INT "$pinger"
wait "$pinger" || true
sed 's/^/  /' "$WORK/ping.out" | grep -E "transmitted|rtt"
pass "vm1 killed $KILLS times and restarted by a reload during the pings; QEMU reconnected each time"

# The counters of both ends once traffic has stopped both ways, read as one snapshot: the
# namespace's counters, then the guest's next two lines, then the namespace's again; quiet
# when the two lines agree and the namespace's counters did not move across them. A frame
# either end sent or received in that time (an ARP probe re-validating a neighbour, the
# guest's IPv6 router solicitations after its link came back) shows as a change, and the
# check is made again; so the figures compared below were all counted at one moment.
stats_lines() { tr -d '\r' <"$WORK/vm1.console" | grep -a "^VMTEST-STATS"; }
ns_counters() {  # "TX RX" of the namespace's TAP, one read of each
  local d=/sys/class/net/vsit-kn/statistics
  ip netns exec vsit-kn cat "$d/tx_packets" "$d/rx_packets" | paste -sd' '
}
quiet() {
  local n1 c0 deadline=$((SECONDS + 10)) lines
  n1=$(ns_counters)
  c0=$(stats_lines | wc -l)
  until (( $(stats_lines | wc -l) >= c0 + 3 )); do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  NS_COUNTS=$(ns_counters)
  # Lines c0+1 and c0+2: the guest read its counters for c0+2 after the first read here
  # (line c0 may have been half-written then), and both are complete, since line c0+3
  # follows them.
  mapfile -t lines < <(stats_lines | sed -n "$((c0 + 1)),$((c0 + 2))p")
  ((${#lines[@]} == 2)) && [[ ${lines[0]} == "${lines[1]}" && $n1 == "$NS_COUNTS" ]] || return 1
  GUEST_STATS=${lines[1]}
}
wait_for 60 "both ends' counters to be still across two of the guest's reports" quiet
read -r _ g_rx g_tx g_changes g_carrier <<<"$GUEST_STATS"
read -r ns_tx ns_rx <<<"$NS_COUNTS"
echo "  namespace sent $ns_tx, guest received $g_rx; guest sent $g_tx, namespace received $ns_rx"
echo "  guest link: $g_changes carrier changes, carrier $g_carrier"
drops=$(ctl stats --json | python3 -c "
import json, sys
print(' '.join(f\"{e['name']}:{r}={n}\" for e in json.load(sys.stdin)['endpoints'] for r, n in e['drops'].items() if n))")
[[ -z $drops ]] || fail "the switch dropped frames across the kills: $drops"
waits=$(stat vm1 'e["vu_reconnect_waits"]')
[[ $waits == $((KILLS + 1)) ]] || fail "vm1 waited for its front-end $waits times, not $((KILLS + 1))"
python3 - "$ns_tx" "$g_rx" "$g_tx" "$ns_rx" $((KILLS + 1)) <<'PY' || fail "frames lost or repeated across the restarts"
import sys
ns_tx, g_rx, g_tx, ns_rx, restarts = map(int, sys.argv[1:])
ok = True
# Into the guest: exactly (the delivery journal); out of it: what QEMU dropped from the
# guest's transmit queue, at most one a restart, never a frame twice.
for what, sent, got, lost in (("namespace -> guest", ns_tx, g_rx, 0), ("guest -> namespace", g_tx, ns_rx, restarts)):
    if got > sent or sent - got > lost:
        print(f"  {what}: sent {sent}, received {got}: at most {lost} may be missing, none repeated")
        ok = False
sys.exit(0 if ok else 1)
PY
((g_carrier == 1 && g_changes >= 2 * (KILLS + 1))) || fail "the guest's link did not go down and come back with each restart"
[[ $(grep -a -c "VMTEST-UP" "$WORK/vm1.console") == 1 ]] || fail "the guest rebooted"
pass "no frame dropped by the switch, every frame both ways arrived (within one per restart), the guest kept running"
