#!/usr/bin/env bash
# Two hosts, one L2: two vswitchd instances, each in its own "host" namespace with an
# uplink TAP endpoint enslaved to a Linux bridge together with a VXLAN device (VNI 42),
# the two hosts joined by a veth pair (the underlay, MTU 1500). Behind each switch a
# namespace stands for a VM. The uplink ports have no mac and no port security (every
# station of the other host is behind them), and every port of the overlay has mtu 1450
# (1500 less VXLAN's 50 bytes: outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14).
# - ping and iperf3 TCP from vm1 (behind switch 1) to vm2 (behind switch 2);
# - each switch learns the other host's station behind its uplink;
# - a full 1450-byte datagram with DF set crosses whole, and the underlay carries it
#   without fragments; a larger one from a vm whose MTU was raised behind the switch's
#   back is dropped as mtu_exceeded as it enters switch 1, counted, never cut.
source "$(dirname "$0")/lib.sh"
require_root

# The underlay: host1 and host2 joined by a veth pair.
for h in 1 2; do
  ip netns del "vxh$h" 2>/dev/null || true
  ip netns add "vxh$h"
  NAMESPACES+=("vxh$h")
  ip -n "vxh$h" link set lo up
done
ip -n vxh1 link add vxu1 type veth peer name vxu2 netns vxh2
ip -n vxh1 addr add 10.200.0.1/24 dev vxu1
ip -n vxh2 addr add 10.200.0.2/24 dev vxu2
ip -n vxh1 link set vxu1 up
ip -n vxh2 link set vxu2 up
# On each host: VXLAN 42 to the other, a bridge with it and the uplink TAP (made here, so
# it can be enslaved before the switch attaches to it).
for h in 1 2; do
  other=$((3 - h))
  ip -n "vxh$h" link add vxlan42 type vxlan id 42 local "10.200.0.$h" remote "10.200.0.$other" dstport 4789 dev "vxu$h"
  ip -n "vxh$h" link add br42 type bridge
  ip -n "vxh$h" tuntap add dev "vxup$h" mode tap
  ip -n "vxh$h" link set vxlan42 master br42
  ip -n "vxh$h" link set "vxup$h" master br42
  for d in vxlan42 "vxup$h" br42; do ip -n "vxh$h" link set "$d" up; done
  add_netns "vxvm$h" "vxvm$h" "02:00:00:00:0e:0$h" "10.201.0.$h"
done
[[ $(ip netns exec vxh1 cat /sys/class/net/vxlan42/mtu) -eq 1450 ]] || fail "VXLAN over a 1500 underlay should have MTU 1450"

switch_toml() {  # switch_toml N UID_BASE
  cat <<TOML
[switch]
name = "itvx$1"
endpoint_uid_base = $2

[[endpoint]]
name = "vm$1"
mac = "02:00:00:00:0e:0$1"
frontend = "tap"
mtu = 1450
[endpoint.tap]
ifname = "vxvm$1"
netns = "vxvm$1"

[[endpoint]]
name = "uplink"
frontend = "tap"
mtu = 1450
[endpoint.tap]
ifname = "vxup$1"
netns = "vxh$1"
TOML
}
switch_toml 1 60600 >"$WORK/s1.toml"
switch_toml 2 60700 >"$WORK/s2.toml"
start_second "$WORK/s2.toml"
start_daemon "$WORK/s1.toml"
ctl2() { "$BIN/vswitchctl" --config "$WORK/s2.toml" "$@"; }

ip netns exec vxvm1 ping -c 3 -i 0.2 -W 2 -q 10.201.0.2 >/dev/null || fail "ping vm1 -> vm2 across the VXLAN"
ip netns exec vxvm2 ping -c 3 -i 0.2 -W 2 -q 10.201.0.1 >/dev/null || fail "ping vm2 -> vm1 across the VXLAN"
pass "ping between namespaces behind two switches joined by VXLAN"

learned() {  # learned CTL-FUNCTION ENDPOINT MAC PORT
  "$1" fdb --json | python3 -c "
import json, sys
f = json.load(sys.stdin)['fdb']
sys.exit(0 if any(e['endpoint'] == '$2' and e['mac'] == '$3' and e['port'] == '$4' and not e['static'] for e in f) else 1)"
}
wait_for 5 "switch 1 to learn vm2 behind its uplink" learned ctl vm1 02:00:00:00:0e:02 uplink
wait_for 5 "switch 2 to learn vm1 behind its uplink" learned ctl2 vm2 02:00:00:00:0e:01 uplink
pass "each switch learned the other host's station behind its uplink"

frags0=$(ip netns exec vxh2 awk '/^Ip: [A-Z]/ {for (i = 2; i <= NF; i++) if ($i == "ReasmReqds") f = i}
                                 /^Ip: [0-9]/ {print $f}' /proc/net/snmp)
ip netns exec vxvm1 ping -c 3 -i 0.2 -W 2 -q -M do -s 1422 10.201.0.2 >/dev/null || fail "1450-byte datagrams vm1 -> vm2"
frags1=$(ip netns exec vxh2 awk '/^Ip: [A-Z]/ {for (i = 2; i <= NF; i++) if ($i == "ReasmReqds") f = i}
                                 /^Ip: [0-9]/ {print $f}' /proc/net/snmp)
[[ $frags1 -eq $frags0 ]] || fail "the underlay carried the full-MTU datagrams in fragments ($((frags1 - frags0)))"
pass "a full 1450-byte datagram crosses whole, the underlay unfragmented"

d0=$(stat vm1 'e["drops"]["mtu_exceeded"]')
ip -n vxvm1 link set vxvm1 mtu 1500
! ip netns exec vxvm1 ping -c 3 -i 0.2 -W 1 -q -M do -s 1472 10.201.0.2 >/dev/null 2>&1 ||
  fail "a 1514-byte frame crossed a 1450 overlay"
wait_for 5 "3 mtu_exceeded drops on vm1" stat_is vm1 'e["drops"]["mtu_exceeded"]' -eq $((d0 + 3))
ip -n vxvm1 link set vxvm1 mtu 1450
pass "a frame above the overlay's MTU is dropped and counted as it enters (mtu_exceeded), never cut"

ip netns exec vxvm2 iperf3 -s -1 -D -I "$WORK/iperf3.pid" >/dev/null
wait_for 10 "iperf3 server in vm2" ip netns exec vxvm2 sh -c 'ss -ltn | grep -q ":5201 "'
ip netns exec vxvm1 iperf3 -c 10.201.0.2 -t 3 -J >"$WORK/tcp.json" || fail "iperf3 TCP vm1 -> vm2"
read -r bits retr < <(python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["end"]
print(int(e["sum_received"]["bits_per_second"]), e["sum_sent"].get("retransmits", 0))' "$WORK/tcp.json")
[[ $bits -gt 50000000 ]] || fail "TCP vm1 -> vm2 across the VXLAN: only $bits bit/s"
stat_is vm1 'e["drops"]["mtu_exceeded"]' -eq $((d0 + 3)) ||
  fail "TCP produced mtu_exceeded drops on vm1: $(($(stat vm1 'e["drops"]["mtu_exceeded"]') - d0 - 3))"
pass "iperf3 TCP vm1 -> vm2 across the VXLAN: $((bits / 1000000)) Mbit/s ($retr retransmits), no MTU drop"
