#!/usr/bin/env bash
# Per-port MTU (endpoint.mtu) between three namespaces: a and b at 9000, c at 1500.
# - vswitchd sets each TAP's MTU (these TAPs exist before it starts: found, not made) and
#   `vswitchctl ports` shows it;
# - a full 9000-byte datagram with DF set crosses a -> b whole;
# - the same datagram a -> c is not delivered to c's port (a frame above its mtu + 18) and
#   each is counted as mtu_exceeded on c, where it was dropped;
# - a frame above a's own mtu (its TAP's MTU raised behind the switch's back) is dropped
#   as it enters, counted on a, and never reaches b;
# - TCP works across the mismatch, a -> c, with no MTU drop (TCP's MSS follows c's MTU;
#   a's TSO segments are GSO frames, cut to that MSS), and at 9000 a -> b.
source "$(dirname "$0")/lib.sh"
source "$HERE/three_ns_env.sh"
require_root
setup_three
cat >"$WORK/mtu.toml" <<'TOML'
[switch]
name = "itmtu"

[[endpoint]]
name = "a"
mac = "02:00:00:00:0a:01"
frontend = "tap"
mtu = 9000
[endpoint.tap]
ifname = "vsit-a"
netns = "vsit-a"

[[endpoint]]
name = "b"
mac = "02:00:00:00:0a:02"
frontend = "tap"
mtu = 9000
[endpoint.tap]
ifname = "vsit-b"
netns = "vsit-b"

[[endpoint]]
name = "c"
mac = "02:00:00:00:0a:03"
frontend = "tap"
mtu = 1500
[endpoint.tap]
ifname = "vsit-c"
netns = "vsit-c"
TOML
ip -n vsit-a link set vsit-a mtu 1280  # the switch's to set, whatever it was
start_daemon "$WORK/mtu.toml"

for x in a:9000 b:9000 c:1500; do
  ns=vsit-${x%%:*}
  got=$(ip netns exec "$ns" cat "/sys/class/net/$ns/mtu")
  [[ $got -eq ${x#*:} ]] || fail "$ns has MTU $got, the topology says ${x#*:}"
done
ctl ports --json | python3 -c '
import json, sys
m = {p["name"]: p["mtu"] for p in json.load(sys.stdin)["ports"]}
sys.exit(0 if m == {"a": 9000, "b": 9000, "c": 1500} else "ports --json shows %r" % m)' || fail "ports --json"
ctl ports | awk '$1 == "a" && $7 == "9000" {found = 1} END {exit !found}' || fail "ports does not show a's MTU: $(ctl ports)"
grep -q "endpoint a: tap vsit-a in netns vsit-a attached, mtu 9000" "$WORK/vswitchd.log" || fail "the log does not name a's MTU"
pass "each TAP has its port's MTU, shown by vswitchctl ports"

mtu_drops() { stat "$1" 'e["drops"]["mtu_exceeded"]'; }
ip netns exec vsit-a ping -c 3 -i 0.2 -W 2 -q -M do -s 8972 10.78.0.2 >/dev/null || fail "9000-byte datagrams a -> b"
ip netns exec vsit-a ping -c 1 -W 2 -q 10.78.0.3 >/dev/null || fail "ping a -> c"
c0=$(mtu_drops c)
a0=$(mtu_drops a)
! ip netns exec vsit-a ping -c 3 -i 0.2 -W 1 -q -M do -s 8972 10.78.0.3 >/dev/null 2>&1 ||
  fail "a 9014-byte frame was delivered to c's 1500-byte port"
wait_for 5 "3 mtu_exceeded drops on c" stat_is c 'e["drops"]["mtu_exceeded"]' -eq $((c0 + 3))
stat_is a 'e["drops"]["mtu_exceeded"]' -eq "$a0" || fail "the sender's port (mtu 9000) dropped its own 9014-byte frames"
pass "9000-byte datagrams cross a -> b; to c's 1500-byte port each is dropped as mtu_exceeded on c"

# b's bytes from a, not its frames: the namespaces' ARP (b re-validating its entry for a,
# a answering) may cross meanwhile, tens of bytes a frame, where one frame above the mtu
# is over 9000.
b_in0=$(stat b 'e["peers"]["a"]["in_bytes"]')
ip -n vsit-a link set vsit-a mtu 9500
! ip netns exec vsit-a ping -c 3 -i 0.2 -W 1 -q -M do -s 9400 10.78.0.2 >/dev/null 2>&1 ||
  fail "a frame above a's mtu 9000 crossed the switch"
wait_for 5 "3 mtu_exceeded drops on a" stat_is a 'e["drops"]["mtu_exceeded"]' -eq $((a0 + 3))
stat_is b 'e["peers"]["a"]["in_bytes"]' -lt $((b_in0 + 9000)) || fail "b received frames above a's mtu"
ip -n vsit-a link set vsit-a mtu 9000
pass "a frame above the sender's own mtu is dropped as it enters, counted on the sender"

c1=$(mtu_drops c)
a1=$(mtu_drops a)
b1=$(mtu_drops b)
for dst in 3 2; do
  ns=vsit-$([[ $dst == 3 ]] && echo c || echo b)
  ip netns exec "$ns" iperf3 -s -1 -D -I "$WORK/iperf3.pid" >/dev/null
  wait_for 10 "iperf3 server in $ns" ip netns exec "$ns" sh -c 'ss -ltn | grep -q ":5201 "'
  ip netns exec vsit-a iperf3 -c "10.78.0.$dst" -t 2 -J >"$WORK/tcp$dst.json" || fail "iperf3 TCP a -> 10.78.0.$dst"
  bits=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$WORK/tcp$dst.json")
  [[ $bits -gt 10000000 ]] || fail "TCP a -> 10.78.0.$dst: only $bits bit/s"
  wait_for 10 "the iperf3 server in $ns to exit" sh -c "! ip netns exec $ns ss -ltn | grep -q ':5201 '"
  echo "TCP a -> $ns: $((bits / 1000000)) Mbit/s"
done
stat_is c 'e["drops"]["mtu_exceeded"]' -eq "$c1" && stat_is a 'e["drops"]["mtu_exceeded"]' -eq "$a1" &&
  stat_is b 'e["drops"]["mtu_exceeded"]' -eq "$b1" ||
  fail "TCP produced mtu_exceeded drops: a $(mtu_drops a), b $(mtu_drops b), c $(mtu_drops c)"
pass "TCP a -> c (1500) and a -> b (9000) with no MTU drop"
