#!/usr/bin/env bash
# The watchdog: an idle endpoint, woken by vswitchd after half a timeout without a move of
# its heartbeat, moves it and survives; a hung one
# (SIGSTOP: alive, but it never runs again) is killed and restarted, the others keep
# forwarding meanwhile, and the restarted one, idle, survives too; vswitchd held up past
# the timeout rings idle endpoints before it takes their silence for a hang.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
static_neighbours  # no ARP: nothing but the watchdog's rings wakes an idle endpoint
# 4 s: each endpoint has 2 s to answer a ring. With 1 s, an endpoint kept off its core
# for half a second (a loaded VM) was taken for hung.
sed 's/^name = "it3"$/name = "it3"\nwatchdog_ms = 4000/' "$HERE/three-ns.toml" >"$WORK/watchdog.toml"
grep -q '^watchdog_ms = 4000$' "$WORK/watchdog.toml" || fail "could not write the test topology"
start_daemon "$WORK/watchdog.toml"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.3 >/dev/null || fail "ping a -> c"

# Idle: vswitchd rings c after half a watchdog timeout without a move, so its sleeps go on
# counting, and it is never taken for hung.
sleeps() { stat c 'e["sleeps"]'; }
first=$(sleeps)
woken() { (($(sleeps) >= first + 3)); }
wait_for 30 "idle c to wake three times" woken
hung=$(ctl ports --json | python3 -c "import json,sys; print(sum(p['hung'] + p['restarts'] for p in json.load(sys.stdin)['ports']))")
[[ $hung == 0 ]] || fail "an idle endpoint was restarted ($hung)"

# vswitchd itself held up (SIGSTOP) for twice the timeout while every endpoint idles: at
# its next look each has been silent past the timeout without ever being rung, and is
# rung first, not killed; all three wake, and none is taken for hung.
sleeps_all() { ctl stats --json | python3 -c "
import json, sys
print(' '.join(str(e['sleeps']) for e in json.load(sys.stdin)['endpoints']))"; }
read -r sa sb sc < <(sleeps_all)
kill -STOP "$DAEMON_PID"
sleep 8  # the time vswitchd does not run, not a wait for an event
kill -CONT "$DAEMON_PID"
all_woke() { local a b c; read -r a b c < <(sleeps_all); ((a > sa && b > sb && c > sc)); }
wait_for 30 "every endpoint to wake after vswitchd's stop" all_woke
hung=$(ctl ports --json | python3 -c "import json,sys; print(sum(p['hung'] + p['restarts'] for p in json.load(sys.stdin)['ports']))")
[[ $hung == 0 ]] || fail "idle endpoints were killed after vswitchd was held up ($hung hung or restarted)"

# Hung: stopped, c never answers; the watchdog kills it (SIGKILL reaches a stopped process).
victim=$(pid_of c)
kill -STOP "$victim"
restarted() { [[ $(ctl ports --json | python3 -c "
import json, sys
p = next(p for p in json.load(sys.stdin)['ports'] if p['name'] == 'c')
print(p['state'] == 'up' and p['restarts'] == 1 and p['hung'] == 1 and p['pid'] != $victim)") == True ]]; }
ip netns exec vsit-a ping -c 3 -i 0.2 -W 2 -q 10.78.0.2 >/dev/null || fail "a -> b while c is stopped"
wait_for 30 "the watchdog to restart c" restarted
grep -q "endpoint c (pid $victim) is hung" "$WORK/vswitchd.log" || fail "no log line for the hung endpoint"
grep -q "endpoint c (pid $victim) killed by signal 9.*by the watchdog (hung)" "$WORK/vswitchd.log" ||
  fail "the restart does not say the watchdog killed it"
# The restarted c, left idle, is woken like any other and kept: the ring its predecessor
# got before it was killed is not the new process's own (a carried-over ring left every
# restarted endpoint unrung, so killed as hung at each idle timeout).
first=$(sleeps)
wait_for 30 "the restarted c, idle, to wake three times" woken
restarts=$(ctl ports --json | python3 -c "
import json, sys
p = next(p for p in json.load(sys.stdin)['ports'] if p['name'] == 'c')
print(p['restarts'], p['hung'])")
[[ $restarts == "1 1" ]] || fail "the restarted c was taken for hung while idle (restarts, hung: $restarts)"
ip netns exec vsit-a ping -c 3 -i 0.1 -W 2 -q 10.78.0.3 >/dev/null || fail "no traffic to c after its restart"
ctl ports | grep -q "1/1hung" || fail "vswitchctl ports does not show the hung restart"
pass "idle endpoints woken and kept; a stopped endpoint killed by the watchdog and restarted"
