#!/usr/bin/env bash
# kill -9 of endpoint c while iperf3 runs between a and b: that run goes on without a
# pause, vswitchd restarts c, and c's traffic comes back.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/three-ns.toml"
for ip in 10.78.0.2 10.78.0.3; do
  ip netns exec vsit-a ping -c 1 -W 2 -q "$ip" >/dev/null || fail "ping a -> $ip"
done
ip netns exec vsit-b iperf3 -s -1 -D -I "$WORK/iperf3.pid" >/dev/null
wait_for 10 "iperf3 server" ip netns exec vsit-b sh -c 'ss -ltn | grep -q ":5201 "'
b_in0=$(stat b 'e["peers"]["a"]["in_frames"]')
ip netns exec vsit-a iperf3 -c 10.78.0.2 -t 6 -i 0.5 -J >"$WORK/tcp.json" 2>&1 &
client=$!
# Kill once the stream runs: the switch has carried its first thousand frames to b.
# (iperf3 -J writes nothing until the client ends, so its output cannot tell.)
wait_for 5 "the stream from a to b to start" stat_is b 'e["peers"]["a"]["in_frames"]' -gt $((b_in0 + 1000))
victim=$(pid_of c)
kill -9 "$victim"
kill -0 "$client" 2>/dev/null || fail "the stream ended before c was killed"
restarted() { [[ $(ctl ports --json | python3 -c "
import json, sys
p = next(p for p in json.load(sys.stdin)['ports'] if p['name'] == 'c')
print(p['state'] == 'up' and p['restarts'] == 1 and p['pid'] != $victim)") == True ]]; }
wait_for 10 "vswitchd to restart c" restarted
wait "$client" || fail "iperf3 a -> b failed while c was killed"
python3 - "$WORK/tcp.json" <<'PY' || fail "iperf3 a -> b stalled while c was killed"
import json, sys
d = json.load(open(sys.argv[1]))
rates = [i["sum"]["bits_per_second"] for i in d["intervals"]]
print("a -> b per 0.5 s interval, Gbit/s:", " ".join(f"{r / 1e9:.1f}" for r in rates))
sys.exit(0 if len(rates) >= 10 and min(rates) > 0 else 1)
PY
ip netns exec vsit-a ping -c 3 -i 0.1 -W 2 -q 10.78.0.3 >/dev/null || fail "no traffic to c after its restart"
ip netns exec vsit-c ping -c 3 -i 0.1 -W 2 -q 10.78.0.2 >/dev/null || fail "no traffic from c after its restart"
grep -q "endpoint c (pid $victim) killed by signal 9" "$WORK/vswitchd.log" || fail "vswitchd did not report the kill"
pass "a -> b kept flowing through c's kill -9; c restarted and forwards again"
