#!/usr/bin/env bash
# Administrative link state (vswitchctl link ENDPOINT up|down) on TAP endpoints, between
# the three namespaces of three-ns.toml:
# - down: the command returns once a's endpoint has taken it; a's TAP has no carrier in
#   its namespace (NO-CARRIER, carrier 0); vswitchctl ports shows the link down; frames
#   b sends toward a are dropped as link_down on a; b and c go on talking;
# - a's endpoint killed with -9: the restarted one keeps the link down;
# - up: the carrier is back and a reaches b again;
# - a wrong endpoint or state is a usage error (2).
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/three-ns.toml"

carrier() { ip netns exec "vsit-$1" cat "/sys/class/net/vsit-$1/carrier"; }
link_col() { ctl ports | awk -v n="$1" '$1 == n {print $8}'; }
ip netns exec vsit-a ping -c 2 -i 0.2 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b before the link goes down"
[[ $(carrier a) == 1 && $(link_col a) == up ]] || fail "a's link is not up at start: carrier $(carrier a), ports $(link_col a)"

out=$(ctl link a down) || fail "vswitchctl link a down exited $?"
[[ $out == "a: link down" ]] || fail "vswitchctl link a down said: $out"
[[ $(carrier a) == 0 ]] || fail "a's TAP still has its carrier once vswitchctl link returned"
ip -n vsit-a link show vsit-a | grep -q NO-CARRIER || fail "the namespace does not see NO-CARRIER: $(ip -n vsit-a link show vsit-a)"
[[ $(link_col a) == down ]] || fail "vswitchctl ports shows a's link as $(link_col a)"
ctl ports --json | python3 -c '
import json, sys
p = {x["name"]: (x["link"], x["link_pending"]) for x in json.load(sys.stdin)["ports"]}
sys.exit(0 if p == {"a": ("down", False), "b": ("up", False), "c": ("up", False)} else "ports --json: %r" % p)' ||
  fail "ports --json"
stat_is a 'e["link_down"]' -eq 1 || fail "a's link_down gauge is not 1"
grep -q "link set down" "$WORK/vswitchd.log" || fail "the log does not say the link went down"
pass "link down: a's TAP has no carrier, vswitchctl ports and the gauge show it"

d0=$(stat a 'e["drops"]["link_down"]')
! ip netns exec vsit-b ping -c 3 -i 0.2 -W 1 -q 10.78.0.1 >/dev/null 2>&1 || fail "b reached a through a link that is down"
wait_for 5 "b's frames toward a dropped as link_down on a" stat_is a 'e["drops"]["link_down"]' -ge $((d0 + 3))
ip netns exec vsit-b ping -c 2 -i 0.2 -W 2 -q 10.78.0.3 >/dev/null || fail "b -> c stopped with a's link"
pass "nothing crosses a's link while it is down (each frame counted as link_down); b and c go on"

old=$(pid_of a)
kill -9 "$old"
restarted() { local p; p=$(pid_of a) && [[ $p != "$old" && $p != 0 ]] && all_up; }
wait_for 15 "a's endpoint restarted" restarted
[[ $(link_col a) == down && $(carrier a) == 0 ]] || fail "after a restart a's link is $(link_col a), carrier $(carrier a)"
! ip netns exec vsit-b ping -c 2 -i 0.2 -W 1 -q 10.78.0.1 >/dev/null 2>&1 || fail "b reached a after a's endpoint restarted down"
pass "a restarted endpoint keeps its link down"

# Up while the endpoint restarts (killed again, the link set up before or just after its
# successor starts): the successor gives the TAP its carrier back either way.
old=$(pid_of a)
kill -9 "$old"
out=$(ctl link a up) || fail "vswitchctl link a up exited $?"
[[ $out == "a: link up" || $out == "a: link up when it runs (the endpoint is "* ]] || fail "link a up said: $out"
wait_for 15 "a's endpoint restarted" restarted
wait_for 5 "a's carrier back" bash -c "[[ \$(ip netns exec vsit-a cat /sys/class/net/vsit-a/carrier) == 1 ]]"
[[ $(link_col a) == up ]] || fail "link a up: ports shows $(link_col a)"
wait_for 10 "a reaching b again" ip netns exec vsit-a ping -c 1 -W 1 -q 10.78.0.2
grep -q "link set up" "$WORK/vswitchd.log" || fail "the log does not say the link came up"
pass "link up: the carrier is back and a reaches b"

set +e
ctl link nosuch down >/dev/null 2>&1; r1=$?
ctl link a sideways >/dev/null 2>&1; r2=$?
set -e
[[ $r1 == 2 && $r2 == 2 ]] || fail "a wrong endpoint or state exited $r1 and $r2, not 2"
pass "a wrong endpoint or state is a usage error"
