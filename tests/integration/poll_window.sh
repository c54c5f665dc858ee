#!/usr/bin/env bash
# The adaptive poll window (on by default) spins only while traffic flows: after a ping
# flood through the switch, every endpoint is back asleep, using no CPU, however long the
# flood taught its window to be.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/three-ns.toml"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"

# 2000 requests, one per ms: a flow, the case the window learns to spin for.
out=$(ip netns exec vsit-a ping -c 2000 -i 0.001 -W 1 -q 10.78.0.2) || true
received=$(awk '/packets transmitted/ {print $4}' <<<"$out")
echo "$out" | tail -2
[[ ${received:-0} -ge 1990 ]] || fail "ping flood: only ${received:-0} of 2000 replies"

ticks() {  # CPU ticks (user + system) of every endpoint process
  local t=0 pid
  for e in a b c; do
    pid=$(pid_of "$e")
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)
# Idle from here on. Whatever window the flood taught, the first sleep ends it: spinning
# happens only after work. 3 s of idle may hold a heartbeat wake-up per endpoint.
t0=$(ticks)
start=$(date +%s.%N)
sleep 3  # the idle interval being measured, not a wait for an event
t1=$(ticks)
end=$(date +%s.%N)
pct=$(python3 -c "print(round(100 * ($t1 - $t0) / $hz / ($end - $start), 2))")
echo "idle CPU after the flood: $pct% of a core (3 endpoints, $((t1 - t0)) ticks)"
python3 -c "import sys; sys.exit(0 if $pct <= 1.0 else 1)" || fail "endpoints use $pct% of a core while idle"
pass "ping flood answered, endpoints idle at $pct% afterwards"
