#!/usr/bin/env bash
# vswitchd's life cycle, without root (generator endpoints): stale shared memory from a
# crashed daemon is removed at start; a second daemon on the same topology is refused with
# the first one's pid; an endpoint killed with -9 is restarted and continues its counters;
# SIGTERM removes every shared-memory object and the lock. As root: another local user who
# creates and holds a lock file under the switch's name in /dev/shm (where the lock used to
# be) cannot keep vswitchd from starting; the lock lives in a 0700 directory of its own.
source "$(dirname "$0")/lib.sh"
name="itlife$$"
CONFIG="$WORK/life.toml"
cat >"$CONFIG" <<TOML
[switch]
name = "$name"
[fabric]
ring_bytes = 65536
max_frame = 1500
[[endpoint]]
name = "g1"
mac = "02:00:00:00:0d:01"
frontend = "generator"
[endpoint.generator]
rate_fps = 2000
peer = "g2"
[[endpoint]]
name = "g2"
mac = "02:00:00:00:0d:02"
frontend = "generator"
[endpoint.generator]
rate_fps = 2000
peer = "g1"
TOML
# What a daemon killed with -9 leaves behind (a channel of an older topology, say, and
# g1's stats slice, which the new daemon must create under the same name).
stale="/dev/shm/vswitch.$name.old-gone"
echo "junk" >"$stale"
stale_slice="/dev/shm/vswitch.$name.stats.g1"
echo "junk" >"$stale_slice"
squatter=""
if [[ $(id -u) -eq 0 ]]; then
  squat="/dev/shm/vswitch.$name.lock"
  setpriv --reuid=65534 --regid=65534 --clear-groups touch "$squat"
  # Another user's object under g2's stats slice name, made to keep vswitchd from starting.
  squat_slice="/dev/shm/vswitch.$name.stats.g2"
  setpriv --reuid=65534 --regid=65534 --clear-groups touch "$squat_slice"
  # The lock is taken on fd 9, which sleep inherits: killing $squatter releases it.
  setpriv --reuid=65534 --regid=65534 --clear-groups bash -c 'exec 9<>"$1" && flock 9 && exec sleep 30' _ "$squat" &
  squatter=$!
  held() { ! flock -n "$squat" true; }
  wait_for 5 "user 65534 to hold $squat" held
fi
start_daemon "$CONFIG"
if [[ -n $squatter ]]; then
  kill "$squatter" 2>/dev/null || true
  grep -q "removed /dev/shm/vswitch.$name.lock: it has this switch's name but belongs to uid 65534" \
    "$WORK/vswitchd.log" || fail "no message for the other user's object"
  grep -q "removed $squat_slice: it has this switch's name but belongs to uid 65534" "$WORK/vswitchd.log" ||
    fail "no message for the other user's object under a stats slice name"
  lock="/run/vswitch/lock/$name.lock"
  [[ -f $lock && $(cat "$lock") == "$DAEMON_PID" ]] || fail "no lock $lock holding the daemon's pid"
  [[ $(command stat -c %a /run/vswitch/lock) == 700 ]] || fail "lock directory mode $(command stat -c %a /run/vswitch/lock)"
fi
[[ ! -e $stale ]] || fail "stale $stale was not removed"
grep -q "removed stale shared memory /dev/shm/vswitch.$name.old-gone" "$WORK/vswitchd.log" || fail "no message for the stale object"
grep -q "removed stale shared memory $stale_slice" "$WORK/vswitchd.log" || fail "no message for the stale stats slice"

# A second daemon on the same topology: refused, naming the first.
set +e
"$BIN/vswitchd" --config "$CONFIG" 2>"$WORK/second.log"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "second vswitchd exited $rc, expected 1"
grep -q "already run by another vswitchd (pid $DAEMON_PID" "$WORK/second.log" || fail "second vswitchd said: $(cat "$WORK/second.log")"
all_up || fail "the second vswitchd disturbed the first"

# kill -9 of g1: restarted, counters continue from where they were.
wait_for 10 "g2 to receive 1000 frames" stat_is g2 'e["gen_received"]' -gt 1000
victim=$(pid_of g1)
sent_before=$(stat g1 'e["gen_sent"]')
kill -9 "$victim"
restarted() { [[ $(pid_of g1) != "$victim" ]] && all_up && [[ $(ctl ports --json | python3 -c "
import json, sys
print(next(p['restarts'] for p in json.load(sys.stdin)['ports'] if p['name'] == 'g1'))") -eq 1 ]]; }
wait_for 10 "g1 to be restarted" restarted
wait_for 10 "the new g1 to send" stat_is g1 'e["gen_sent"]' -gt "$((sent_before + 1000))"
wait_for 10 "g2 to receive the new g1's stream" stat_is g2 'e["gen_received"]' -gt "$((sent_before + 500))"
[[ $(stat g2 'e["gen_bad"]') -eq 0 ]] || fail "corrupt frames after the restart"

# `vswitchctl counters` describes exactly the keys `stats --json` prints for a generator
# endpoint (both come from the counter tables).
ctl stats --json >"$WORK/stats.json"
"$BIN/vswitchctl" counters --json >"$WORK/counters.json"
python3 - "$WORK/stats.json" "$WORK/counters.json" <<'PY' || fail "vswitchctl counters and stats --json disagree"
import json, sys
e = json.load(open(sys.argv[1]))["endpoints"][0]
described = {c["key"] for c in json.load(open(sys.argv[2]))["counters"] if c["group"] not in ("vhost-user", "bad chains")}
printed = {k for k, v in e.items() if isinstance(v, int) and k not in ("pid", "restarts", "hung")}
printed |= {"drops." + r for r in e["drops"]}
printed |= {"peers.PEER." + k for p in e["peers"].values() for k in p}
if printed != described:
    print("printed, not described:", sorted(printed - described), "described, not printed:", sorted(described - printed))
    sys.exit(1)
PY

# SIGTERM: every object of this switch and the lock are gone.
stop_daemon
left=$(ls /dev/shm | grep -F "vswitch.$name." || true)
[[ -z $left ]] || fail "left in /dev/shm after SIGTERM: $left"
[[ $(id -u) -ne 0 || ! -e /run/vswitch/lock/$name.lock ]] || fail "the lock is left after SIGTERM"
pass "stale objects removed, second daemon refused, kill -9 restarted with counters kept, counters described, clean shutdown"
