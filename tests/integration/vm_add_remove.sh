#!/usr/bin/env bash
# A VM attached to a running switch and detached again, with no restart of vswitchd: a
# real QEMU guest (TCG, the Linux virtio-net driver; QEMU with reconnect=1 as
# scripts/vm-lib.sh starts it) on a vhost-user endpoint added to the file
# (fabric.spare_ports = 1) and later removed from it:
# - added by `vswitchctl reload`: its socket is bound on the spare port, the guest boots
#   on it and reaches the namespace behind the switch's TAP port, which never restarts;
# - removed by `vswitchctl reload`: its socket file goes, the guest sees its carrier go to
#   0, the namespace no longer reaches it, `vswitchctl ports` shows the TAP port alone.
source "$(dirname "$0")/lib.sh"
require_root
source "$HERE/vm_env.sh"

add_netns vsadd-h vsadd-h 02:00:00:00:0d:03 10.81.0.3
cat >"$WORK/vm-add.toml" <<TOML
[switch]
name = "itvmadd"

[fabric]
spare_ports = 1

[[endpoint]]
name = "host"
mac = "02:00:00:00:0d:03"
frontend = "tap"
[endpoint.tap]
ifname = "vsadd-h"
netns = "vsadd-h"

[[endpoint]]
name = "gen"
frontend = "generator"
enabled = false
TOML
start_daemon "$WORK/vm-add.toml"
host_pid=$(pid_of host)
[[ ! -e $WORK/vm1.sock ]] || fail "a socket before vm1 was added"

cat >>"$WORK/vm-add.toml" <<TOML

[[endpoint]]
name = "vm1"
mac = "52:54:00:00:0d:01"
frontend = "vhost-user"
[endpoint.vhost_user]
socket = "$WORK/vm1.sock"
queue_size = 256
TOML
out=$(ctl reload) || fail "vswitchctl reload (vm1 added) exited $?: $out"
[[ $out == "reload: applied 1 change(s); added: vm1 (each change in vswitchd's log)" ]] || fail "reload said: $out"
[[ -S $WORK/vm1.sock ]] || fail "vm1's socket was not bound"

reach='for i in $(seq 120); do ping -c1 -W1 $1 >/dev/null 2>&1 && exit 0; done; exit 1'
wait_carrier='for i in $(seq 2000); do [ "$(cat /sys/class/net/eth0/carrier)" = $1 ] && exit 0; sleep 0.1; done; exit 1'
vm_boot "$WORK" vm1 52:54:00:00:0d:01 10.81.0.1 "
sh -c '$reach' _ 10.81.0.3 || exit 11
echo VMTEST-REACHED
sh -c '$wait_carrier' _ 0 || exit 12
echo VMTEST-DETACHED
exit 0" "$(vhost_netdev "$WORK/vm1.sock")" 2>"$WORK/vm1.qemu"
QEMUS+=("$VM_PID")
console_has "VMTEST-REACHED" 300
ip netns exec vsadd-h ping -c 2 -i 0.2 -W 2 -q 10.81.0.1 >/dev/null || fail "the namespace does not reach the guest"
[[ $(pid_of host) == "$host_pid" ]] || fail "the TAP port restarted"
stat_is vm1 'e["vu_connections"]' -ge 1 || fail "no vhost-user connection counted on vm1"
pass "vm1 added: a guest booted on its socket reaches the namespace; the TAP port kept its process"

python3 - "$WORK/vm-add.toml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
open(p, "w").write(s[:s.index('\n[[endpoint]]\nname = "vm1"')] + "\n")
PY
grep -q 'name = "vm1"' "$WORK/vm-add.toml" && fail "could not edit $WORK/vm-add.toml"
out=$(ctl reload) || fail "vswitchctl reload (vm1 removed) exited $?: $out"
[[ $out == "reload: applied 1 change(s); removed: vm1 (each change in vswitchd's log)" ]] || fail "reload said: $out"
[[ ! -e $WORK/vm1.sock ]] || fail "vm1's socket file is still there"
console_has "VMTEST-DETACHED" 60
! ip netns exec vsadd-h ping -c 2 -i 0.2 -W 1 -q 10.81.0.1 >/dev/null 2>&1 || fail "the namespace reached a removed VM"
names=$(ctl ports --json | python3 -c 'import json, sys; print(" ".join(p["name"] for p in json.load(sys.stdin)["ports"]))')
[[ $names == "host gen" ]] || fail "ports after vm1's removal: $names"
[[ $(pid_of host) == "$host_pid" ]] || fail "the TAP port restarted"
pass "vm1 removed: its socket goes, the guest sees its carrier go to 0, the TAP port kept its process"
