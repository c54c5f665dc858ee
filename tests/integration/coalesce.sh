#!/usr/bin/env bash
# Wake-up coalescing (coalesce_us) between the namespaces of three-ns.toml, b's port set to
# coalesce over 10 ms (and no poll window):
# - a paced UDP flow a -> b (4k datagrams/s): b takes it in batches on its timer (timed
#   sleeps), the switch drops nothing, and every datagram iperf3 lost was dropped by the
#   kernel outside the switch;
# - once the flow stops b runs no timer: its timed sleeps stop, the endpoints idle at ~0%;
# - vswitchctl channels shows wake_on_full set on the channels into b, not out of it;
# - coalesce_us = 0 by `vswitchctl reload`: b restarted alone, the same flow again takes
#   no timed sleep, and costs b more sleeps (wake-ups) than it did with coalescing;
#   wake_on_full is cleared.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
python3 - "$HERE/three-ns.toml" "$WORK/coalesce.toml" <<'PY'
import sys
s = open(sys.argv[1]).read()
# No poll window on b, with coalescing or without: its spin would catch frames 50 us
# apart without sleeping, and the comparison below is of wake-ups.
s = s.replace('name = "b"\ncore = 1\n', 'name = "b"\ncore = 1\npoll_max_us = 0\ncoalesce_us = 10000\n', 1)
open(sys.argv[2], "w").write(s)
PY
grep -q "^coalesce_us = 10000$" "$WORK/coalesce.toml" || fail "could not write $WORK/coalesce.toml"
start_daemon "$WORK/coalesce.toml"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"
ip netns exec vsit-b iperf3 -s -D -p 5212 -I "$WORK/iperf3.pid"
wait_for 5 "iperf3 server" ip netns exec vsit-b sh -c 'ss -ltn | grep -q :5212'

# paced_flow NAME: 3 s of 64-byte datagrams, 4k per second (iperf3's pacing timer at
# 10 us); prints "SLEEPS TIMED DATAGRAMS" for b over the flow. The sender on a small VM
# paces in bursts a few milliseconds apart (20k/s came in about 60 datagrams per wake-up of
# b without coalescing), so a coalescing period must be well above that for the batching
# to show in the count of wake-ups: at 10 ms, b wakes about 100 times a second on its
# timer (about 290 sleeps over the flow here), where the flow uncoalesced woke it 2200 to
# 7400 times.
paced_flow() {
  local s0 t0 d0 k0 kernel
  s0=$(stat b 'e["sleeps"]'); t0=$(stat b 'e["timed_sleeps"]')
  d0=$(( $(stat a 'e["drops_total"]') + $(stat b 'e["drops_total"]') ))
  k0=$(kernel_udp_drops vsit-a vsit-b)
  ip netns exec vsit-a iperf3 -c 10.78.0.2 -p 5212 -u -b 2048k -l 64 --pacing-timer 10 -t 3 --json \
    >"$WORK/$1.json" || fail "$1: iperf3 failed"
  kernel=$(( $(kernel_udp_drops vsit-a vsit-b) - k0 ))
  local d1=$(( $(stat a 'e["drops_total"]') + $(stat b 'e["drops_total"]') ))
  ((d1 == d0)) || fail "$1: the switch dropped $((d1 - d0)) frames: $(stat a 'e["drops"]') $(stat b 'e["drops"]')"
  python3 - "$WORK/$1.json" "$kernel" "$1" <<'PY' || fail "$1: iperf3 lost datagrams the kernel did not drop"
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum"]
kernel = int(sys.argv[2])
print("  %s: %d datagrams, %d lost, %d dropped by the kernel outside the switch" % (sys.argv[3], s["packets"], s["lost_packets"], kernel),
      file=sys.stderr)
sys.exit(0 if s["packets"] > 6000 and s["lost_packets"] <= kernel else 1)
PY
  local packets
  packets=$(python3 -c "import json; print(json.load(open('$WORK/$1.json'))['end']['sum']['packets'])")
  echo "$(( $(stat b 'e["sleeps"]') - s0 )) $(( $(stat b 'e["timed_sleeps"]') - t0 )) $packets"
}

read -r sleeps timed packets < <(paced_flow coalesced)
echo "  b: $sleeps sleeps, $timed of them timed, for $packets datagrams"
((timed > 0)) || fail "b never slept on its coalescing timer"
coalesced_sleeps=$sleeps coalesced_timed=$timed coalesced_packets=$packets
pass "a paced flow into a coalescing port: taken on its timer ($timed timed sleeps), nothing lost in the switch"

# Idle: the timer stops with the flow (at most the one timed sleep that found nothing).
timed_settled() {  # b took no timed sleep for 0.3 s
  local t; t=$(stat b 'e["timed_sleeps"]')
  sleep 0.3
  [[ $(stat b 'e["timed_sleeps"]') == "$t" ]]
}
wait_for 5 "b's last timed sleep" timed_settled
t_idle=$(stat b 'e["timed_sleeps"]')
sleep 2  # the idle interval being observed, not a wait for an event
[[ $(stat b 'e["timed_sleeps"]') == "$t_idle" ]] || fail "b kept sleeping on its timer while idle"
pass "idle after the flow: no timed sleep"

# The channels into b ask senders that find them full to ring b (wake_on_full, shown by
# vswitchctl channels); those out of b do not.
wake_on_full() {  # wake_on_full FROM TO
  ctl channels --json | python3 -c "
import json, sys
print(next(c['wake_on_full'] for c in json.load(sys.stdin)['channels'] if c['from'] == '$1' and c['to'] == '$2'))"
}
[[ $(wake_on_full a b) == 1 && $(wake_on_full b a) == 0 ]] ||
  fail "wake_on_full: a -> b $(wake_on_full a b), b -> a $(wake_on_full b a); expected 1 and 0"

# Off by reload: b restarted alone on coalesce_us = 0.
sed -i 's/^coalesce_us = 10000$/coalesce_us = 0/' "$WORK/coalesce.toml"
a_pid=$(pid_of a)
out=$(ctl reload) || fail "vswitchctl reload exited $?: $out"
[[ $out == *"restarted on the new settings and up: b"* ]] || fail "reload said: $out"
[[ $(pid_of a) == "$a_pid" ]] || fail "a was restarted by a change to b's settings"
[[ $(wake_on_full a b) == 0 ]] || fail "b, restarted without coalescing, still asks for rings on full channels"
read -r sleeps timed packets < <(paced_flow uncoalesced)
echo "  b: $sleeps sleeps, $timed of them timed, for $packets datagrams"
((timed == 0)) || fail "b slept on a timer with coalesce_us = 0"
pass "coalesce_us = 0 applied by reload: the same flow takes no timed sleep"
# The batching itself: the same flow cost b fewer sleeps (wake-ups) with coalescing. Here
# b sleeps some 11000 times for 12000 datagrams without it, 300 with it. A machine loaded
# enough to run iperf3's sender in bursts batches the uncoalesced flow too (fewer than one
# sleep per ten datagrams): then the comparison tells nothing, and the coalesced run is
# judged alone: most of its sleeps were on its timer, and it slept less than once per ten
# datagrams (a timer far shorter than coalesce_us would time every sleep and batch nothing).
if ((sleeps >= packets / 10)); then
  ((coalesced_sleeps < sleeps)) || fail "coalescing did not batch: $coalesced_sleeps sleeps with it, $sleeps without"
  pass "batched: $coalesced_sleeps sleeps with coalescing, $sleeps without, for the same flow"
else
  ((coalesced_timed * 2 >= coalesced_sleeps && coalesced_sleeps * 10 < coalesced_packets)) ||
    fail "coalescing did not batch: $coalesced_timed of $coalesced_sleeps sleeps on its timer, for $coalesced_packets datagrams"
  pass "batched: $coalesced_timed of $coalesced_sleeps sleeps on the timer (the uncoalesced flow came in bursts: $sleeps sleeps)"
fi
