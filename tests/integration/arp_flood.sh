#!/usr/bin/env bash
# An ARP request (broadcast) from a is flooded to b and c; b answers, ping works.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
start_daemon "$HERE/three-ns.toml"
flooded0=$(stat a 'e["flooded"]')
c_in0=$(stat c 'e["peers"]["a"]["in_frames"]')
c_tx0=$(stat c 'e["tx_frames"]')
ip -n vsit-a neigh flush all
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.2 >/dev/null || fail "ping a -> b"
# Counters reach the stats region when each loop goes idle.
wait_for 5 "a's flooded counter to move" stat_is a 'e["flooded"]' -gt "$flooded0"
wait_for 5 "c to receive the flooded ARP from a" stat_is c 'e["peers"]["a"]["in_frames"]' -gt "$c_in0"
wait_for 5 "c to deliver it to its namespace" stat_is c 'e["tx_frames"]' -gt "$c_tx0"
ip -n vsit-a neigh show 10.78.0.2 | grep -q "02:00:00:00:0a:02" || fail "a did not resolve b's MAC"
pass "ARP broadcast flooded to b and c, answered by b"
