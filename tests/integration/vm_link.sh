#!/usr/bin/env bash
# vswitchctl link on a vhost-user port with a real QEMU guest (TCG, the Linux virtio-net
# driver), QEMU started with reconnect=1 as scripts/vm-lib.sh does:
# - down: the endpoint disconnects QEMU, which shows its guest the link down: the guest
#   sees eth0's carrier go to 0; QEMU's reconnects are refused while the link stays down
#   (counted, said once); nothing of the guest crosses the switch;
# - up: QEMU's next reconnect is taken, the guest sees its carrier come back and reaches
#   the namespace again: the same boot (no guest reboot), the same guest command;
# - the port turned off by a reload (enabled = false): its socket file goes, the guest sees
#   its carrier go to 0; turned on again: the socket is bound anew, QEMU reconnects, and
#   the guest sees its carrier and reaches the namespace (a VM detached from the switch and
#   attached again without a restart of vswitchd or of the VM).
source "$(dirname "$0")/lib.sh"
require_root
source "$HERE/vm_env.sh"

add_netns vslink-h vslink-h 02:00:00:00:0c:03 10.80.0.3
cat >"$WORK/vm-link.toml" <<TOML
[switch]
name = "itvmlink"

[[endpoint]]
name = "vm1"
mac = "52:54:00:00:0c:01"
enabled = true
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/vm1.sock"
queue_size = 256

[[endpoint]]
name = "host"
mac = "02:00:00:00:0c:03"
frontend = "tap"
[endpoint.tap]
ifname = "vslink-h"
netns = "vslink-h"
TOML
start_daemon "$WORK/vm-link.toml"

# The guest: reach the namespace, then report its carrier as it changes (polled every
# 0.1 s, for at most 200 s each way), then reach the namespace again.
reach='for i in $(seq 120); do ping -c1 -W1 $1 >/dev/null 2>&1 && exit 0; done; exit 1'
wait_carrier='for i in $(seq 2000); do [ "$(cat /sys/class/net/eth0/carrier)" = $1 ] && exit 0; sleep 0.1; done; exit 1'
vm_boot "$WORK" vm1 52:54:00:00:0c:01 10.80.0.1 "
sh -c '$reach' _ 10.80.0.3 || exit 11
echo VMTEST-REACHED carrier \$(cat /sys/class/net/eth0/carrier)
sh -c '$wait_carrier' _ 0 || exit 12
echo VMTEST-CARRIER-DOWN
sh -c '$wait_carrier' _ 1 || exit 13
echo VMTEST-CARRIER-UP
sh -c '$reach' _ 10.80.0.3 || exit 14
echo VMTEST-REACHED-AGAIN
sh -c '$wait_carrier' _ 0 || exit 15
echo VMTEST-PORT-OFF
sh -c '$wait_carrier' _ 1 || exit 16
echo VMTEST-PORT-ON
sh -c '$reach' _ 10.80.0.3 || exit 17
exit 0" "$(vhost_netdev "$WORK/vm1.sock")" 2>"$WORK/vm1.qemu"
QEMUS+=("$VM_PID")

console_has "VMTEST-REACHED carrier 1" 300
connections() { stat vm1 'e["vu_connections"]'; }
c0=$(connections)

[[ $(ctl link vm1 down) == "vm1: link down" ]] || fail "vswitchctl link vm1 down"
console_has "VMTEST-CARRIER-DOWN" 30
pass "link down: the guest sees eth0's carrier go to 0"
wait_for 10 "QEMU's reconnect refused" grep -q "vhost-user connection refused: the link is down" "$WORK/vswitchd.log"
rx0=$(stat vm1 'e["rx_frames"]')
! ip netns exec vslink-h ping -c 3 -i 0.2 -W 1 -q 10.80.0.1 >/dev/null 2>&1 || fail "the namespace reached the guest through a link that is down"
stat_is vm1 'e["rx_frames"]' -eq "$rx0" || fail "frames from the guest crossed a link that is down"
stat_is vm1 'e["vu_connections_refused"]' -ge 1 || fail "the refused reconnects are not counted"
[[ $(grep -c "the link is down" "$WORK/vswitchd.log") -eq 1 ]] || fail "the refusals are said more than once"
pass "while down QEMU's reconnects are refused (counted, said once) and nothing crosses"

[[ $(ctl link vm1 up) == "vm1: link up" ]] || fail "vswitchctl link vm1 up"
console_has "VMTEST-CARRIER-UP" 30
console_has "VMTEST-REACHED-AGAIN" 120
stat_is vm1 'e["vu_connections"]' -eq $((c0 + 1)) || fail "expected one new vhost-user connection, got $(( $(connections) - c0 ))"
# A reboot ends QEMU (-no-reboot) or, had it not, runs the guest's script twice.
kill -0 "${QEMUS[0]}" 2>/dev/null && [[ $(grep -a -c "VMTEST-REACHED carrier" "$WORK/vm1.console") == 1 ]] ||
  fail "the guest rebooted"
pass "link up: QEMU's reconnect is taken, the guest sees its carrier and reaches the namespace again, no reboot"

sed -i 's/^enabled = true$/enabled = false/' "$WORK/vm-link.toml"
out=$(ctl reload) || fail "vswitchctl reload (vm1 off) exited $?: $out"
[[ $out == "reload: applied 1 change(s); turned off and stopped: vm1 (each change in vswitchd's log)" ]] || fail "reload said: $out"
[[ ! -e $WORK/vm1.sock ]] || fail "vm1's socket file is still there"
console_has "VMTEST-PORT-OFF" 30
! ip netns exec vslink-h ping -c 2 -i 0.2 -W 1 -q 10.80.0.1 >/dev/null 2>&1 || fail "the namespace reached a guest whose port is off"
pass "port turned off: its socket goes, the guest sees its carrier go to 0"

sed -i 's/^enabled = false$/enabled = true/' "$WORK/vm-link.toml"
out=$(ctl reload) || fail "vswitchctl reload (vm1 on) exited $?: $out"
[[ $out == "reload: applied 1 change(s); turned on and up: vm1 (each change in vswitchd's log)" ]] || fail "reload said: $out"
console_has "VMTEST-PORT-ON" 60
rc=$(vm_rc "$WORK" vm1 120) || fail "the guest did not finish within 120 s"
[[ $rc == 0 ]] || { tail -20 "$WORK/vm1.console" >&2; fail "the guest did not reach the namespace after its port came back (rc $rc)"; }
# Its command done, the guest powers off: a reboot would have run the command twice.
[[ $(grep -a -c "VMTEST-REACHED carrier" "$WORK/vm1.console") == 1 ]] || fail "the guest rebooted"
pass "port turned on again: QEMU reconnects, the guest sees its carrier and reaches the namespace, no reboot"
