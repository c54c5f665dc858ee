#!/usr/bin/env bash
# Live reconfiguration (vswitchctl reload, SIGHUP) between the three namespaces of
# three-ns.toml, the file edited while the switch runs:
# - unchanged: said so, nothing restarted;
# - c's own settings changed (mtu, poll_us) during an iperf3 UDP run a -> b (a rate this
#   switch carries with no drop): applied by restarting c alone on the new file (its TAP
#   gets the new MTU, its port enforces it); a and b keep their processes, the switch
#   drops nothing on them, the stream never stalls, and every datagram iperf3 lost was
#   lost outside the switch (a's send buffer or TAP, b's TAP or receive buffer, counted by
#   the kernel: b's port shares its core with c, whose restart may starve the receiver);
# - c's VLAN (vlan = 10, then none again): applied by restarting c alone; a and b, not
#   restarted, follow it from their slices: with c in VLAN 10 the VLAN-unaware a no longer
#   reaches it (its frames to c's address flood in a's VLAN only), back out of it a does;
# - a setting every endpoint reads as it starts (a's mac): refused as a whole with the
#   file, line and key in the log, nothing restarted, exit 1;
# - an endpoint added without fabric.spare_ports: refused by vswitchctl before anything is
#   sent (port_add_remove.sh adds and removes them with spare ports);
# - vswitchctl goes by what runs, not the file: with a fourth endpoint, another capture
#   ring size and another MTU for c in the file (none applied), `ports` still shows the
#   three running ports and c's MTU in force, notes that the file differs, and `capture`
#   attaches with the running ring's size.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
cp "$HERE/three-ns.toml" "$WORK/live.toml"
start_daemon "$WORK/live.toml"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.3 >/dev/null || fail "ping a -> c before the reload"

out=$(ctl reload) || fail "vswitchctl reload (unchanged) exited $?"
[[ $out == "reload: unchanged" ]] || fail "reload of an unchanged file said: $out"
pass "an unchanged file: said so"

pids() { echo "$(pid_of a) $(pid_of b)"; }
before=$(pids)
c_before=$(pid_of c)
drops_a=$(stat a 'e["drops_total"]')
drops_b=$(stat b 'e["drops_total"]')
kernel0=$(kernel_udp_drops vsit-a vsit-b)
ip netns exec vsit-b iperf3 -s -1 -D -p 5211 -I "$WORK/iperf3.pid"
wait_for 5 "iperf3 server" ip netns exec vsit-b sh -c 'ss -ltn | grep -q :5211'
# 10 Mbit/s: b's 1 MiB channel holds some 0.8 s of it, so a pause of b's core while the
# other endpoint there restarts cannot fill it (at 50 Mbit/s, 170 ms could).
ip netns exec vsit-a iperf3 -c 10.78.0.2 -p 5211 -u -b 10M -l 1000 -t 4 -i 0.5 --json >"$WORK/iperf3.json" &
client=$!
# c's own settings, changed under the running switch: its MTU and its poll time.
python3 - "$WORK/live.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace('name = "c"\ncore = 1\n', 'name = "c"\ncore = 1\nmtu = 1400\npoll_us = 20\n', 1)
open(p, "w").write(s)
PY
grep -q "^mtu = 1400$" "$WORK/live.toml" || fail "could not edit $WORK/live.toml"
sleep 1  # a second of the stream before the reload (part of the scenario, not a wait for state)
out=$(ctl reload) || fail "vswitchctl reload (c changed) exited $?: $out"
[[ $out == "reload: applied 2 change(s); restarted on the new settings and up: c (each change in vswitchd's log)" ]] ||
  fail "reload said: $out"
wait "$client" || fail "iperf3 a -> b failed across the reload"
mtu_line=$(grep -n '^mtu = 1400$' "$WORK/live.toml" | cut -d: -f1)
grep -q "reload: $WORK/live.toml:$mtu_line: endpoint c: mtu: (unset) -> 1400" "$WORK/vswitchd.log" ||
  fail "the change is not logged with its line"
[[ $(pid_of c) != "$c_before" ]] && all_up || fail "reload said c is up again, but ports shows: $(ctl ports)"
restarts=$(ctl ports --json | python3 -c 'import json, sys; print(next(p["restarts"] for p in json.load(sys.stdin)["ports"] if p["name"] == "c"))')
[[ $restarts == 0 ]] || fail "a reload's restart counted as a restart (a death): $restarts"
[[ $(pids) == "$before" ]] || fail "a or b was restarted by a change to c's settings"
[[ $(ip netns exec vsit-c cat /sys/class/net/vsit-c/mtu) == 1400 ]] || fail "c's TAP did not get MTU 1400"
stat_is a 'e["drops_total"]' -eq "$drops_a" && stat_is b 'e["drops_total"]' -eq "$drops_b" ||
  fail "a or b dropped frames across the reload: $(stat a 'e["drops"]') $(stat b 'e["drops"]')"
kernel=$(( $(kernel_udp_drops vsit-a vsit-b) - kernel0 ))
udp_stream_ok "$WORK/iperf3.json" "$kernel" 7 "a -> b across the reload" || fail "the a -> b stream stalled, or lost datagrams the kernel did not drop, across the reload"
d0=$(stat c 'e["drops"]["mtu_exceeded"]')
! ip netns exec vsit-a ping -c 2 -i 0.2 -W 1 -q -M do -s 1472 10.78.0.3 >/dev/null 2>&1 || fail "a 1514-byte frame reached c's 1400 port"
wait_for 5 "c dropping frames above its new mtu" stat_is c 'e["drops"]["mtu_exceeded"]' -ge $((d0 + 2))
ip netns exec vsit-a ping -c 2 -i 0.2 -W 2 -q -M do -s 1372 10.78.0.3 >/dev/null || fail "full 1400-MTU datagrams a -> c"
pass "c's mtu and poll_us applied by restarting c alone; a -> b dropped nothing and never stalled"

# set_c_vlan LINE: c's vlan line as LINE ("" removes it), then a reload that restarts c alone.
set_c_vlan() {
  python3 - "$WORK/live.toml" "$1" <<'PY'
import re, sys
p, line = sys.argv[1], sys.argv[2]
s = open(p).read()
s = re.sub(r'(name = "c"\ncore = 1\n)(vlan = \d+\n)?', lambda m: m.group(1) + (line + "\n" if line else ""), s, count=1)
open(p, "w").write(s)
PY
  local c_was out
  c_was=$(pid_of c)
  out=$(ctl reload) || fail "vswitchctl reload (c's vlan: ${1:-none}) exited $?: $out"
  [[ $out == "reload: applied 1 change(s); restarted on the new settings and up: c (each change in vswitchd's log)" ]] ||
    fail "reload (c's vlan: ${1:-none}) said: $out"
  [[ $(pid_of c) != "$c_was" && $(pids) == "$before" ]] || fail "c's vlan: not c alone restarted"
}
before=$(pids)
followed() { grep -c "vswitch\[$1\]: peer c changed (VLANs or address)" "$WORK/vswitchd.log" || true; }
followed_both() { [[ $(followed a) -eq $1 && $(followed b) -eq $1 ]]; }  # each log read afresh
set_c_vlan "vlan = 10"
wait_for 5 "a and b to follow c's VLANs" followed_both 1
ctl ports | awk '$1 == "c" && $9 == "10" {f = 1} END {exit !f}' || fail "vswitchctl ports does not show c in VLAN 10: $(ctl ports)"
flood0=$(stat a 'e["flooded"]')
out_c=$(stat a 'e["peers"]["c"]["out_frames"]')
! ip netns exec vsit-a ping -c 2 -i 0.2 -W 1 -q 10.78.0.3 >/dev/null 2>&1 || fail "a (VLAN-unaware) reached c in VLAN 10"
# The same snapshot of a's counters has its floods and what it sent c.
wait_for 5 "a's frames for c to flood in a's own VLAN" stat_is a 'e["flooded"]' -ge $((flood0 + 2))
stat_is a 'e["peers"]["c"]["out_frames"]' -eq "$out_c" || fail "a still sends to c, now in VLAN 10"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "a -> b with c in VLAN 10"
set_c_vlan ""
wait_for 5 "a and b to follow c's VLANs again" followed_both 2
ip netns exec vsit-a ping -c 2 -i 0.2 -W 2 -q 10.78.0.3 >/dev/null || fail "a -> c out of VLAN 10 again"
pass "c's vlan applied by restarting c alone; a and b followed it from their slices, not restarted"

python3 - "$WORK/live.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace('mac = "02:00:00:00:0a:01"\n', 'mac = "02:00:00:00:0a:09"\n', 1)
open(p, "w").write(s)
PY
mac_line=$(grep -n '^mac = "02:00:00:00:0a:09"$' "$WORK/live.toml" | cut -d: -f1)
[[ -n $mac_line ]] || fail "could not edit $WORK/live.toml"
all=$(echo "$(pids) $(pid_of c)")
set +e
out=$(ctl reload 2>&1); rc=$?
set -e
[[ $rc == 1 && $out == *"reload refused: a change needs a restart of vswitchd"* ]] ||
  fail "a mac change: exit $rc, said: $out"
grep -q "reload: $WORK/live.toml:$mac_line: endpoint a: mac: 02:00:00:00:0a:01 -> 02:00:00:00:0a:09 (needs a restart of vswitchd)" "$WORK/vswitchd.log" ||
  fail "the refused change is not logged with its file, line and key"
[[ "$(pids) $(pid_of c)" == "$all" ]] || fail "a refused reload restarted an endpoint"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "a -> b after a refused reload"
pass "a mac change needs a restart: refused as a whole, logged with file:line: key, nothing restarted"

sed -i 's/^mac = "02:00:00:00:0a:09"$/mac = "02:00:00:00:0a:01"/' "$WORK/live.toml"
cat >>"$WORK/live.toml" <<'TOML'
[[endpoint]]
name = "d"
frontend = "generator"
TOML
set +e
out=$(ctl reload 2>&1); rc=$?
set -e
[[ $rc == 1 && $out == *"adding or removing endpoints needs a restart of vswitchd"* ]] || fail "an added endpoint: exit $rc, said: $out"
pass "an added endpoint: refused by vswitchctl"

python3 - "$WORK/live.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("mtu = 1400\n", "mtu = 1300\n", 1)
s += "\n[capture]\nring_bytes = 8388608\n"
open(p, "w").write(s)
PY
grep -q "^mtu = 1300$" "$WORK/live.toml" || fail "could not edit $WORK/live.toml"
ports=$(ctl ports --json 2>"$WORK/ports.err") || fail "vswitchctl ports with an edited file: $(cat "$WORK/ports.err")"
python3 - "$ports" <<'PY' || fail "vswitchctl ports did not show what runs"
import json, sys
ports = {p["name"]: p for p in json.loads(sys.argv[1])["ports"]}
assert sorted(ports) == ["a", "b", "c"], sorted(ports)
assert ports["c"]["mtu"] == 1400, ports["c"]["mtu"]
PY
grep -q "has changed since vswitchd loaded it" "$WORK/ports.err" || fail "no note that the file differs: $(cat "$WORK/ports.err")"
ctl topology 2>/dev/null >"$WORK/running.toml" || fail "vswitchctl topology exited $?"
grep -q "^mtu = 1400$" "$WORK/running.toml" && ! grep -q "^mtu = 1300$" "$WORK/running.toml" &&
  ! grep -q "^ring_bytes = 8388608$" "$WORK/running.toml" || fail "vswitchctl topology did not print what runs"
# Pings for as long as the capture may wait (killed once it has its frames): a capture that
# attaches late still sees two.
ip netns exec vsit-a ping -c 200 -i 0.1 -q 10.78.0.3 >/dev/null 2>&1 &
pinger=$!
timeout 20 "$BIN/vswitchctl" --config "$CONFIG" capture c --count 2 -w "$WORK/c.pcapng" 2>"$WORK/capture.err" ||
  fail "capture with an edited file's ring size: $(cat "$WORK/capture.err")"
kill "$pinger" 2>/dev/null || true
wait "$pinger" 2>/dev/null || true
grep -q "2 frames written" "$WORK/capture.err" || fail "capture: $(cat "$WORK/capture.err")"
pass "vswitchctl shows and attaches to the topology vswitchd runs, not the edited file"
