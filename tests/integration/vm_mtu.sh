#!/usr/bin/env bash
# VIRTIO_NET_F_MTU with real QEMU guests (TCG, the Linux virtio-net driver) on vhost-user
# endpoints whose ports have mtu = 9000, and a namespace on a TAP endpoint of the same MTU:
# - vm1 (host_mtu=9000): QEMU sends NET_SET_MTU 9000, the endpoint takes it and says so,
#   the guest's driver comes up with MTU 9000, and full 9000-byte datagrams with DF set
#   cross both ways between the guest and the namespace;
# - vm2 (host_mtu=9001, above its port's mtu): the endpoint refuses NET_SET_MTU with a
#   non-zero REPLY_ACK status and says why, QEMU reports that the back-end does not support
#   that MTU and does not start the device, and nothing of vm2 crosses the switch.
source "$(dirname "$0")/lib.sh"
require_root
source "$HERE/vm_env.sh"

add_netns vsmtu-h vsmtu-h 02:00:00:00:0b:03 10.79.0.3
cat >"$WORK/vm-mtu.toml" <<TOML
[switch]
name = "itvmmtu"

[[endpoint]]
name = "vm1"
mac = "52:54:00:00:0b:01"
frontend = "vhost-user"
mtu = 9000
[endpoint.vhost_user]
socket = "$WORK/vm1.sock"
queue_size = 256

[[endpoint]]
name = "vm2"
mac = "52:54:00:00:0b:02"
frontend = "vhost-user"
mtu = 9000
[endpoint.vhost_user]
socket = "$WORK/vm2.sock"
queue_size = 256

[[endpoint]]
name = "host"
mac = "02:00:00:00:0b:03"
frontend = "tap"
mtu = 9000
[endpoint.tap]
ifname = "vsmtu-h"
netns = "vsmtu-h"
TOML
start_daemon "$WORK/vm-mtu.toml"

reach='for i in $(seq 120); do ping -c1 -W1 $1 >/dev/null 2>&1 && exit 0; done; exit 1'
vm_boot "$WORK" vm1 52:54:00:00:0b:01 10.79.0.1 "
echo VMTEST-MTU=\$(cat /sys/class/net/eth0/mtu)
[ \$(cat /sys/class/net/eth0/mtu) = 9000 ] || exit 10
sh -c '$reach' _ 10.79.0.3 || exit 11
ping -c 3 -i 0.2 -W 2 -s 8972 10.79.0.3 || exit 12  # one frame each: it fits the MTU (busybox ping has no -M)
echo VMTEST-PINGED
sleep 300  # up for the namespace's pings; the test stops it
" "$(vhost_netdev "$WORK/vm1.sock")" host_mtu=9000 2>"$WORK/vm1.qemu"
QEMUS+=("$VM_PID")
vm_boot "$WORK" vm2 52:54:00:00:0b:02 10.79.0.2 "
echo VMTEST-MTU=\$(cat /sys/class/net/eth0/mtu)
ping -c 5 -i 0.2 -W 1 10.79.0.3 && exit 20
exit 0" "$(vhost_netdev "$WORK/vm2.sock")" host_mtu=9001 2>"$WORK/vm2.qemu"
QEMUS+=("$VM_PID")

console_has "VMTEST-PINGED" 300
grep -a -q "VMTEST-MTU=9000" "$WORK/vm1.console" || fail "vm1's driver did not take MTU 9000"
# Whole: the namespace reassembled nothing (a fragmented datagram would have been).
reasm=$(ip netns exec vsmtu-h awk '/^Ip: [A-Z]/ {for (i = 2; i <= NF; i++) if ($i == "ReasmReqds") f = i}
                                   /^Ip: [0-9]/ {print $f}' /proc/net/snmp)
[[ $reasm -eq 0 ]] || fail "the namespace reassembled $reasm fragments: the guest's datagrams did not cross whole"
grep -q "gives its guest MTU 9000" "$WORK/vswitchd.log" || fail "vm1's endpoint did not log the MTU QEMU set"
pass "vm1: NET_SET_MTU 9000 taken; the guest's eth0 has MTU 9000; 9000-byte datagrams guest -> namespace"
ip netns exec vsmtu-h ping -c 3 -i 0.2 -W 2 -q -M do -s 8972 10.79.0.1 >/dev/null || fail "9000-byte datagrams namespace -> vm1"
stat_is vm1 'e["drops"]["mtu_exceeded"]' -eq 0 && stat_is host 'e["drops"]["mtu_exceeded"]' -eq 0 ||
  fail "full-MTU frames were dropped as mtu_exceeded"
pass "9000-byte datagrams namespace -> vm1, no mtu_exceeded drop"

rc2=$(vm_rc "$WORK" vm2 300) || fail "vm2 did not finish within 300 s"
[[ $rc2 == 0 ]] || fail "vm2 reached the namespace through a device QEMU should not have started (rc $rc2)"
grep -q "NET_SET_MTU 9001 refused" "$WORK/vswitchd.log" || fail "vm2's endpoint did not log the refusal"
grep -q "9001.*MTU not supported by the backend" "$WORK/vm2.qemu" || fail "QEMU did not report the refusal: $(cat "$WORK/vm2.qemu")"
stat_is vm2 'e["rx_frames"]' -eq 0 || fail "frames from vm2 crossed the switch"
pass "vm2: NET_SET_MTU 9001 refused above the port's mtu 9000; QEMU reports it and does not start the device"
