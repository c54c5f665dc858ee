#!/usr/bin/env bash
# VLANs with a real QEMU guest (TCG; the Linux virtio-net driver and its 8021q VLAN
# devices) on a vhost-user trunk (trunk = [10, 20], no native VLAN), and two namespaces on
# TAP access ports of VLAN 10 and VLAN 20:
# - the guest's eth0.10 reaches the VLAN 10 namespace and eth0.20 the VLAN 20 one: the
#   switch puts each VLAN's tag into the frames it hands the guest's driver and takes the
#   guest's tags out for the access ports;
# - iperf3 TCP both ways between eth0.10 and its namespace: TSO frames with a tag inside
#   (the switch moves their checksum offsets), segmented and checked by both stacks;
# - what the guest sends untagged (its plain eth0) is dropped as vlan_not_allowed, and
#   each namespace's port learns the guest's address (not declared: learned) in its own
#   VLAN only.
source "$(dirname "$0")/lib.sh"
require_root
source "$HERE/vm_env.sh"

add_netns vsvl-10 vsvl-10 02:00:00:00:0e:0a 10.82.10.3
add_netns vsvl-20 vsvl-20 02:00:00:00:0e:14 10.82.20.3
cat >"$WORK/vm-vlan.toml" <<TOML
[switch]
name = "itvmvlan"

[[endpoint]]
name = "vm1"
frontend = "vhost-user"
trunk = [10, 20]
[endpoint.vhost_user]
socket = "$WORK/vm1.sock"
queue_size = 256

[[endpoint]]
name = "h10"
mac = "02:00:00:00:0e:0a"
frontend = "tap"
vlan = 10
[endpoint.tap]
ifname = "vsvl-10"
netns = "vsvl-10"

[[endpoint]]
name = "h20"
mac = "02:00:00:00:0e:14"
frontend = "tap"
vlan = 20
[endpoint.tap]
ifname = "vsvl-20"
netns = "vsvl-20"
TOML
start_daemon "$WORK/vm-vlan.toml"
ip netns exec vsvl-10 iperf3 -s -D -I "$WORK/iperf3.pid"

reach='for i in $(seq 120); do ping -c1 -W1 $1 >/dev/null 2>&1 && exit 0; done; exit 1'
vm_boot "$WORK" vm1 52:54:00:00:0e:01 10.82.0.1 "
for v in 10 20; do
  vconfig add eth0 \$v >/dev/null || exit 9
  ip addr add 10.82.\$v.1/24 dev eth0.\$v && ip link set eth0.\$v up || exit 9
done
sh -c '$reach' _ 10.82.10.3 || exit 10
sh -c '$reach' _ 10.82.20.3 || exit 11
ping -c 3 -i 0.2 -W 1 10.82.0.3 >/dev/null 2>&1  # untagged ARP: the trunk has no native VLAN
iperf3 -c 10.82.10.3 -t 3 -f m || exit 13
iperf3 -c 10.82.10.3 -t 3 -f m -R || exit 14
exit 0" "$(vhost_netdev "$WORK/vm1.sock")" 2>"$WORK/vm1.qemu"
QEMUS+=("$VM_PID")
rc=$(vm_rc "$WORK" vm1 400) || { tail -20 "$WORK/vm1.console" >&2; fail "the guest did not finish within 400 s"; }
tr -d '\r' <"$WORK/vm1.console" | grep -E "receiver$" | sed 's/^/  vm1: /'
[[ $rc == 0 ]] || { tail -30 "$WORK/vm1.console" >&2; fail "the guest's VLAN checks failed (rc $rc)"; }
pass "the guest's eth0.10 and eth0.20 reach their VLANs' namespaces through the trunk; iperf3 TCP both ways on VLAN 10"

# Every stream moved data (a bad checksum after a moved offset would crawl).
tr -d '\r' <"$WORK/vm1.console" | awk '/ receiver$/ { for (i = 1; i < NF; i++) if ($(i+1) == "Mbits/sec") r = $i
                                                   if (r + 0 < 10) bad = 1; n++ } END { exit bad || n != 2 }' ||
  fail "an iperf3 stream over VLAN 10 moved (almost) nothing"
stat_is vm1 'e["drops"]["vlan_not_allowed"]' -ge 1 || fail "the guest's untagged frames were not dropped as vlan_not_allowed"
ctl fdb --json | python3 -c '
import json, sys
seen = {(x["endpoint"], x["vlan"]) for x in json.load(sys.stdin)["fdb"] if x["mac"] == "52:54:00:00:0e:01"}
want = {("h10", 10), ("h20", 20)}
sys.exit(0 if want <= seen and ("h10", 20) not in seen and ("h20", 10) not in seen else "the guest learned as %r" % sorted(seen))' ||
  fail "learning per VLAN"
pass "the guest's untagged frames dropped as vlan_not_allowed; each access port learned the guest in its own VLAN"
