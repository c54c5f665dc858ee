#!/usr/bin/env bash
# vswitchd itself stopped and started again while two QEMU guests (TCG, the Linux
# virtio-net driver, reconnect=1 as scripts/vm-lib.sh starts them) run iperf3 TCP through
# it: each QEMU reconnects to the new vswitchd, the guests see their link go down and come
# back, the TCP stream resumes (the same connection, not a new one), the guests are not
# rebooted, and pings pass afterwards.
source "$(dirname "$0")/lib.sh"
require_root
source "$HERE/vm_env.sh"

cat >"$WORK/vm-restart.toml" <<TOML
[switch]
name = "itvmrestart"

[[endpoint]]
name = "vm1"
mac = "52:54:00:00:0d:01"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/vm1.sock"
queue_size = 256

[[endpoint]]
name = "vm2"
mac = "52:54:00:00:0d:02"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/vm2.sock"
queue_size = 256
TOML
start_daemon "$WORK/vm-restart.toml"

secs=45
reach='for i in $(seq 120); do ping -c1 -W1 $1 >/dev/null 2>&1 && exit 0; done; exit 1'
vm_boot "$WORK" vm1 52:54:00:00:0d:01 10.81.0.1 "iperf3 -s -1 -D; echo VMTEST-SERVING; sleep 600" \
  "$(vhost_netdev "$WORK/vm1.sock")" 2>"$WORK/vm1.qemu"
QEMUS+=("$VM_PID")
vm_boot "$WORK" vm2 52:54:00:00:0d:02 10.81.0.2 "
sh -c '$reach' _ 10.81.0.1 || exit 10
changes=\$(cat /sys/class/net/eth0/carrier_changes)
echo VMTEST-STREAMING
iperf3 -c 10.81.0.1 -t $secs -i 1 -f m --connect-timeout 30000 || exit 11
ping -c 5 -i 0.2 -W 2 10.81.0.1 || exit 12
echo VMTEST-CARRIER-CHANGES=\$((\$(cat /sys/class/net/eth0/carrier_changes) - changes)) carrier=\$(cat /sys/class/net/eth0/carrier)
exit 0" "$(vhost_netdev "$WORK/vm2.sock")" 2>"$WORK/vm2.qemu"
QEMUS+=("$VM_PID")

console_has VMTEST-STREAMING 300 vm2
# A few seconds of the stream through the first vswitchd (part of the scenario, not a
# wait for state), then vswitchd stops and starts again.
sleep 5
mv "$WORK/vswitchd.log" "$WORK/vswitchd-first.log"
t0=$SECONDS
stop_daemon
grep -q "stopping" "$WORK/vswitchd-first.log" || fail "the first vswitchd did not stop cleanly: $(tail -5 "$WORK/vswitchd-first.log")"
start_daemon "$WORK/vm-restart.toml"
connected() { [[ $(grep -c "vhost-user front-end connected" "$WORK/vswitchd.log") -ge 2 ]]; }
wait_for 30 "both QEMUs reconnected to the new vswitchd" connected
echo "  vswitchd down and back up, both QEMUs reconnected, in $((SECONDS - t0)) s"
pass "vswitchd stopped and started again; both QEMUs reconnected"

rc=$(vm_rc "$WORK" vm2 $((secs + 120))) || fail "vm2 did not finish"
tr -d '\r' <"$WORK/vm2.console" | grep -E "sec .*bits/sec|CARRIER" | sed 's/^/  vm2: /' | tail -12
[[ $rc == 0 ]] || { tail -30 "$WORK/vm2.console" >&2; fail "vm2's stream or pings failed across the restart (rc $rc)"; }
# The stream resumed: its last 5 one-second intervals each moved data.
tr -d '\r' <"$WORK/vm2.console" | awk '/sec .* [MG]bits\/sec/ && !/sender|receiver/ { r[n++] = $7 }
  END { if (n < 10) exit 1; for (i = n - 5; i < n; i++) if (r[i] + 0 <= 0) exit 1 }' ||
  fail "the TCP stream did not resume after the restart"
stalled=$(tr -d '\r' <"$WORK/vm2.console" | awk '/sec .* [MG]bits\/sec/ && !/sender|receiver/ && $7 + 0 == 0 { n++ } END { print n + 0 }')
echo "  vm2: one-second intervals with no data across the restart: $stalled"
carrier=$(tr -d '\r' <"$WORK/vm2.console" | grep -a -o "VMTEST-CARRIER-CHANGES=[0-9]* carrier=[0-9]" | tail -1)
[[ $carrier =~ CHANGES=([0-9]+)\ carrier=1 ]] && ((BASH_REMATCH[1] >= 2)) ||
  fail "vm2's link did not go down and come back with vswitchd ($carrier)"
# A reboot ends QEMU (-no-reboot, checked below) or, had it not, runs the guest's script
# twice: each says its marker once.
[[ $(grep -a -c "VMTEST-SERVING" "$WORK/vm1.console") == 1 ]] || fail "vm1 rebooted"
[[ $(grep -a -c "VMTEST-STREAMING" "$WORK/vm2.console") == 1 ]] || fail "vm2 rebooted"
kill -0 "${QEMUS[0]}" 2>/dev/null || fail "vm1's QEMU is gone"
pass "the same TCP stream resumed through the new vswitchd, the link went down and up ($carrier), no guest rebooted"
