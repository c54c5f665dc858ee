#!/usr/bin/env bash
# Endpoints added to and removed from a running switch (fabric.spare_ports = 2), by editing
# its file and `vswitchctl reload`, between the namespaces of three-ns.toml:
# - the switch starts with a and b and two spare ports;
# - c added to the file during an iperf3 UDP run a -> b: c takes a spare port and comes up
#   alone; a and b keep their processes, the switch drops nothing on them and the stream
#   never stalls; a reaches c; vswitchctl shows c (and no spare port), and the file as
#   vswitchd runs it (no note that it differs);
# - b removed: stopped, its port spare again; a -> c goes on, a no longer reaches b, and no
#   MAC table keeps b's address;
# - a capture on b ends when b is removed, saying so, and writes none of the frames of the
#   endpoint that takes b's port next;
# - d added in b's namespace with an address of its own: it takes b's port, starts with
#   counters and a link state of its own (none of b's traffic, up though b was set down),
#   and every MAC table holds d's address, not b's;
# - two more endpoints added with one spare port left: refused as a whole, each endpoint
#   that found no port named with its line, nothing restarted.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
# three-ns.toml without c, with two spare ports and a switch name of its own.
python3 - "$HERE/three-ns.toml" "$WORK/live.toml" "$WORK/c.toml" <<'PY'
import sys
src, live, c = sys.argv[1:]
s = open(src).read()
head, c_table = s.split('[[endpoint]]\nname = "c"\n')
head = head.replace('name = "it3"', 'name = "itar"').replace("stall_timeout_ms = 2000\n", "stall_timeout_ms = 2000\nspare_ports = 2\n")
open(live, "w").write(head)
open(c, "w").write('\n[[endpoint]]\nname = "c"\n' + c_table)
PY
grep -q "^spare_ports = 2$" "$WORK/live.toml" || fail "could not write $WORK/live.toml"
start_daemon "$WORK/live.toml"
grep -q 'running topology "itar" .*: 2 endpoints, 2 spare port(s)' "$WORK/vswitchd.log" ||
  fail "the start does not say its spare ports"
names() { ctl ports --json | python3 -c 'import json, sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["ports"]))'; }
[[ $(names) == "a b" ]] || fail "ports at start: $(names)"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b at start"

pids() { echo "$(pid_of a) $(pid_of b)"; }
before=$(pids)
drops_a=$(stat a 'e["drops_total"]')
drops_b=$(stat b 'e["drops_total"]')
kernel0=$(kernel_udp_drops vsit-a vsit-b)
ip netns exec vsit-b iperf3 -s -1 -D -p 5212 -I "$WORK/iperf3.pid"
wait_for 5 "iperf3 server" ip netns exec vsit-b sh -c 'ss -ltn | grep -q :5212'
# 10 Mbit/s: b's 1 MiB channel holds some 0.8 s of it, so a pause of b's core while the
# other endpoint there restarts cannot fill it (at 50 Mbit/s, 170 ms could).
ip netns exec vsit-a iperf3 -c 10.78.0.2 -p 5212 -u -b 10M -l 1000 -t 4 -i 0.5 --json >"$WORK/iperf3.json" &
client=$!
cat "$WORK/c.toml" >>"$WORK/live.toml"
sleep 1  # a second of the stream before the reload (part of the scenario, not a wait for state)
out=$(ctl reload) || fail "vswitchctl reload (c added) exited $?: $out"
[[ $out == "reload: applied 1 change(s); added: c (each change in vswitchd's log)" ]] || fail "reload (c added) said: $out"
wait "$client" || fail "iperf3 a -> b failed across the reload"
c_line=$(grep -n '^name = "c"$' "$WORK/live.toml" | cut -d: -f1)
grep -q "reload: $WORK/live.toml:$((c_line - 1)): endpoint c: added (tap, port 2)" "$WORK/vswitchd.log" ||
  fail "the addition is not logged with its line and port"
[[ $(pids) == "$before" ]] || fail "a or b was restarted by c's addition"
stat_is a 'e["drops_total"]' -eq "$drops_a" && stat_is b 'e["drops_total"]' -eq "$drops_b" ||
  fail "a or b dropped frames across the addition: $(stat a 'e["drops"]') $(stat b 'e["drops"]')"
kernel=$(( $(kernel_udp_drops vsit-a vsit-b) - kernel0 ))
udp_stream_ok "$WORK/iperf3.json" "$kernel" 7 "a -> b across c's addition" ||
  fail "the a -> b stream stalled, or lost datagrams the kernel did not drop, across c's addition"
[[ $(names) == "a b c" ]] || fail "ports after c's addition: $(names)"
ip netns exec vsit-a ping -c 2 -i 0.2 -W 2 -q 10.78.0.3 >/dev/null || fail "a -> c once c was added"
[[ ! -e /dev/shm/vswitch.itar.stats.c ]] || fail "objects were made under c's name, not the spare port's key"
ctl ports >/dev/null 2>"$WORK/ports.err" || fail "vswitchctl ports after c's addition"
[[ ! -s $WORK/ports.err ]] || fail "vswitchctl says the file differs from what runs: $(cat "$WORK/ports.err")"
ctl topology >"$WORK/running.toml" || fail "vswitchctl topology exited $?"
grep -q '^names = \["a", "b", "c", ""\]$' "$WORK/running.toml" || fail "the running ports: $(tail -3 "$WORK/running.toml")"
pass "c added during a -> b: it took a spare port alone; a and b dropped nothing, never stalled, kept their processes"

b_frames=$(stat b 'e["rx_frames"] + e["tx_frames"]')
((b_frames > 2000)) || fail "b carried only $b_frames frames"  # so that d's fresh counters (< 1000) tell
python3 - "$WORK/live.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
start = s.index('[[endpoint]]\nname = "b"\n')
end = s.index('[[endpoint]]', start + 1)
open(p, "w").write(s[:start] + s[end:])
PY
grep -q '^name = "b"$' "$WORK/live.toml" && fail "could not edit $WORK/live.toml"
# b dies once (restarts 1): the port's next endpoint must not inherit that either.
kill -9 "$(pid_of b)"
wait_for 10 "b restarted" eval '[[ $(ctl ports --json | python3 -c "import json, sys; print(next(p[\"restarts\"] for p in json.load(sys.stdin)[\"ports\"] if p[\"name\"] == \"b\" and p[\"state\"] == \"up\"))" 2>/dev/null) == 1 ]]'
a_pid=$(pid_of a)
c_pid=$(pid_of c)
ctl link b down >/dev/null || fail "vswitchctl link b down"  # a word of b's slice the port's next endpoint must not inherit
# A capture on b when it goes: it ends, saying so, rather than go on with whatever holds
# b's port next.
"$BIN/vswitchctl" --config "$CONFIG" capture b -w "$WORK/b.pcapng" 2>"$WORK/capture-b.err" &
capture=$!
wait_for 5 "the capture on b to start" grep -q "capturing on b" "$WORK/capture-b.err"
out=$(ctl reload) || fail "vswitchctl reload (b removed) exited $?: $out"
[[ $out == "reload: applied 1 change(s); removed: b (each change in vswitchd's log)" ]] || fail "reload (b removed) said: $out"
[[ $(names) == "a c" ]] || fail "ports after b's removal: $(names)"
[[ "$(pid_of a) $(pid_of c)" == "$a_pid $c_pid" ]] || fail "a or c was restarted by b's removal"
grep -q "endpoint port 1 (was b) (pid [0-9]*) stopped: removed by the reload" "$WORK/vswitchd.log" ||
  fail "b's stop is not logged"
ip netns exec vsit-a ping -c 2 -i 0.2 -W 2 -q 10.78.0.3 >/dev/null || fail "a -> c once b was removed"
! ip netns exec vsit-a ping -c 1 -W 1 -q 10.78.0.2 >/dev/null 2>&1 || fail "a still reaches b, removed"
fdb_has() {  # fdb_has MAC: some MAC table holds it
  ctl fdb --json | python3 -c 'import json, sys; sys.exit(0 if any(e["mac"] == sys.argv[1] for e in json.load(sys.stdin)["fdb"]) else 1)' "$1"
}
wait_for 5 "b's address to leave every MAC table" eval '! fdb_has 02:00:00:00:0a:02'
pass "b removed: stopped alone, its address gone from every MAC table; a -> c forwards on"

# d at once, while the capture on b may still run: nothing of d's may be written as b's.
ip -n vsit-b link set vsit-b address 02:00:00:00:0a:04
cat >>"$WORK/live.toml" <<'TOML'

[[endpoint]]
name = "d"
core = 1
mac = "02:00:00:00:0a:04"
frontend = "tap"
[endpoint.tap]
ifname = "vsit-b"
netns = "vsit-b"
TOML
out=$(ctl reload) || fail "vswitchctl reload (d added) exited $?: $out"
[[ $out == "reload: applied 1 change(s); added: d (each change in vswitchd's log)" ]] || fail "reload (d added) said: $out"
[[ $(names) == "a d c" ]] || fail "ports after d's addition (in port order): $(names)"
grep -q "endpoint d: added (tap, port 1)" "$WORK/vswitchd.log" || fail "d did not take b's port"
ip netns exec vsit-a ip neigh flush all
ip netns exec vsit-a ping -c 2 -i 0.2 -W 2 -q 10.78.0.2 >/dev/null || fail "a -> d in b's namespace"
static_for_d() {  # a's and c's tables both hold d's address, static, behind d
  ctl fdb --json | python3 -c '
import json, sys
held = {e["endpoint"] for e in json.load(sys.stdin)["fdb"] if e["mac"] == "02:00:00:00:0a:04" and e["static"] and e["port"] == "d"}
sys.exit(0 if {"a", "c"} <= held else 1)'
}
static_for_d || fail "a's and c's MAC tables do not both hold d's address static: $(ctl fdb)"
! fdb_has 02:00:00:00:0a:02 || fail "a MAC table holds b's address again"
wait_for 5 "the capture on b to end" eval '! kill -0 $capture'
! wait "$capture" || fail "the capture on a removed endpoint exited 0"
grep -q "a reload removed endpoint b" "$WORK/capture-b.err" || fail "the capture on b: $(cat "$WORK/capture-b.err")"
! tshark -r "$WORK/b.pcapng" -Y "eth.addr == 02:00:00:00:0a:04" 2>/dev/null | grep -q . ||
  fail "b's capture holds frames of d, the port's next endpoint"
d_frames=$(stat d 'e["rx_frames"] + e["tx_frames"]')
((d_frames < 1000)) || fail "d started with b's counters: $d_frames frames (b had $b_frames)"
restarts=$(ctl ports --json | python3 -c 'import json, sys; d = next(p for p in json.load(sys.stdin)["ports"] if p["name"] == "d"); print(d["restarts"], d["link"])')
[[ $restarts == "0 up" ]] || fail "d started with b's restarts or link state (b was set down): $restarts"
pass "d added: it took b's port with counters of its own; every MAC table holds d's address, not b's"

cat >>"$WORK/live.toml" <<'TOML'

[[endpoint]]
name = "e"
frontend = "generator"

[[endpoint]]
name = "f"
frontend = "generator"
TOML
all=$(echo "$(pid_of a) $(pid_of c) $(pid_of d)")
set +e
out=$(ctl reload 2>&1); rc=$?
set -e
[[ $rc == 1 && $out == *"reload refused"* ]] || fail "two endpoints for one spare port: exit $rc, said: $out"
f_line=$(grep -n '^name = "f"$' "$WORK/live.toml" | cut -d: -f1)
grep -q "reload refused: $WORK/live.toml:$((f_line - 1)): endpoint f: added, but every spare port is taken (fabric.spare_ports = 2)" \
  "$WORK/vswitchd.log" || fail "the refusal does not name f with its line"
[[ "$(pid_of a) $(pid_of c) $(pid_of d)" == "$all" ]] || fail "a refused reload restarted an endpoint"
[[ $(names) == "a d c" ]] || fail "ports after a refused reload: $(names)"
pass "two endpoints added for one spare port: refused as a whole, the one without a port named with its line"
