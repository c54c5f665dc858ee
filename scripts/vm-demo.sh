#!/usr/bin/env bash
# Two QEMU guests (TCG, the real Linux virtio-net driver) on vhost-user endpoints and one
# network namespace on a TAP endpoint, all through vswitch (configs/vm-demo.toml): pings
# between all three, iperf3 TCP VM-to-VM and VM-to-namespace both ways, then one VM is
# restarted and its endpoint killed with -9 while it pings: QEMU reconnects to the restarted
# endpoint and the pings come back without restarting the VM, and the guest saw its link go
# down and up (virtio-net STATUS). The guests negotiate different features, so the real
# Linux driver drives each path of the device: vm1 first boots without mergeable RX buffers
# and without EVENT_IDX (big-packet RX chains, flag-based notification), then again with
# QEMU's defaults; vm2 runs without receive offloads (guest_csum/tso off) and without
# indirect descriptors: TSO streams from vm1 and from the namespace reach it segmented and
# checksummed by the switch. Needs root. Guest image: scripts/vm-image.sh.
#
# --arch arm64 runs the same checks with arm64 guests (qemu-system-aarch64 -M virt
# -cpu cortex-a53, TCG; Debian's arm64 kernel). Every check holds on both archs. One
# difference is checked rather than assumed: the memory table QEMU sends. x86 `pc` splits
# guest RAM around the VGA/BIOS hole into two regions of the same memfd, arm64 `virt` sends
# one; the endpoint maps each region it is given, so its /proc/PID/maps shows 2 or 1
# mappings of the guest's memfd.
#   scripts/vm-demo.sh [--seconds N] [--arch x86_64|arm64]   (iperf3 duration, default 5)
# VSWITCH_BIN=DIR uses the binaries there (packages are still checked, nothing is built);
# VSWITCH_NO_SETUP=1 skips scripts/setup.sh altogether.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=5
arch=x86_64
while (($#)); do
  case $1 in
    --seconds) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "vm-demo: --seconds N" >&2; exit 2; }; secs=$2; shift 2 ;;
    --arch) [[ $# -ge 2 ]] || { echo "vm-demo: --arch x86_64|arm64" >&2; exit 2; }; arch=$2; shift 2 ;;
    *) echo "vm-demo: unknown argument $1 (--seconds N, --arch x86_64|arm64)" >&2; exit 2 ;;
  esac
done
case $arch in
  x86_64|amd64) arch=x86_64 regions=2 ;;
  arm64|aarch64) arch=arm64 regions=1 ;;
  *) echo "vm-demo: unknown arch '$arch' (x86_64 or arm64)" >&2; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || { echo "vm-demo: needs root (vhost-user sockets in /run, a namespace, a TAP)" >&2; exit 1; }
if [[ ${VSWITCH_NO_SETUP:-0} != 1 ]]; then
  if [[ -n ${VSWITCH_BIN:-} ]]; then scripts/setup.sh --deps >/dev/null; else scripts/setup.sh >/dev/null; fi
fi
scripts/vm-image.sh --arch "$arch" >/dev/null
export VM_ARCH=$arch
cfg=configs/vm-demo.toml
bin=${VSWITCH_BIN:-build/bin}
work=$(mktemp -d /tmp/vswitch-vm.XXXXXX)
daemon_pid=""
qemus=()
cleanup() {
  for p in "${qemus[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${qemus[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $daemon_pid ]]; then kill -INT "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  [[ -f $work/iperf3.pid ]] && kill "$(cat "$work/iperf3.pid")" 2>/dev/null || true
  ip netns del vswitch-host 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "vm-demo: FAILED: $*" >&2; for f in "$work"/*.console; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

# shellcheck source=scripts/vm-lib.sh
. scripts/vm-lib.sh
if ! vm_demo_switch "$work"; then
  daemon_pid=$VM_DAEMON_PID
  fail "vswitchd did not start: $(cat "$work/vswitchd.log")"
fi
daemon_pid=$VM_DAEMON_PID
ip netns exec vswitch-host iperf3 -s -D -I "$work/iperf3.pid"

vm() {  # vm NAME MAC IP COMMAND [DEVICE-OPTIONS]: a guest on its vhost-user endpoint
  vm_boot "$work" "$1" "$2" "$3" "$4" "$(vhost_netdev "/run/vswitch/$1.sock")" "${5:-}"
  qemus+=("$VM_PID")
}
wait_rc() {  # wait_rc NAME SECONDS: the guest's command status
  vm_rc "$work" "$1" "$2" || fail "$1 did not finish within $2 s"
}
endpoint_pid() {  # endpoint_pid NAME: the pid of the endpoint's process
  "$bin/vswitchctl" --config "$cfg" ports --json | python3 -c "
import json, sys
print(next(p['pid'] for p in json.load(sys.stdin)['ports'] if p['name'] == sys.argv[1]))" "$1"
}
reach='for i in $(seq 120); do ping -c1 -W1 $1 >/dev/null 2>&1 && exit 0; done; exit 1'

echo "== booting $arch vm1 and vm2 (TCG: ~10-20 s)"
vm vm1 52:54:00:00:03:01 10.0.0.1 "iperf3 -s -1 && iperf3 -s -1" mrg_rxbuf=off,event_idx=off
vm vm2 52:54:00:00:03:02 10.0.0.2 "
sh -c '$reach' _ 10.0.0.1 || exit 10
ping -c 5 -i 0.2 10.0.0.1 || exit 11
ping -c 5 -i 0.2 10.0.0.3 || exit 12
echo '== iperf3 vm2 -> vm1'; iperf3 -c 10.0.0.1 -t $secs -f g || exit 13
echo '== iperf3 vm1 -> vm2 (segmented by the switch)'
# vm1 starts its second one-shot server when the first test ends: retry a refused connect.
ok=0; for i in \$(seq 50); do iperf3 -c 10.0.0.1 -R -t $secs -f g && { ok=1; break; }; sleep 0.2; done
[ \$ok = 1 ] || exit 16
echo '== iperf3 vm2 -> host namespace'; iperf3 -c 10.0.0.3 -t $secs -f g || exit 14
echo '== iperf3 host namespace -> vm2 (segmented by the switch)'; iperf3 -c 10.0.0.3 -R -t $secs -f g || exit 15
" guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,indirect_desc=off
# The memory table: once vm2's driver is up (SET_MEM_TABLE comes at DRIVER_OK, before
# /init prints VMTEST-READY), its endpoint maps each region QEMU sent from the guest's memfd.
deadline=$((SECONDS + 240))
until grep -q "VMTEST-READY" "$work/vm2.console"; do
  grep -q "VMTEST-RC" "$work/vm2.console" && fail "vm2 stopped before it was ready: $(grep VMTEST-RC "$work/vm2.console")"
  ((SECONDS < deadline)) || fail "vm2 did not boot within 240 s"
  sleep 0.2
done
ep2=$(endpoint_pid vm2)
mapped=$(grep -c "/memfd:memory-backend-memfd " "/proc/$ep2/maps" || true)
echo "  vm2: memory table: $mapped region(s) of the guest's memfd mapped by its endpoint (pid $ep2)"
((mapped == regions)) || fail "$arch guest: the endpoint mapped $mapped memfd region(s), QEMU's $arch machine sends $regions: $(grep memfd "/proc/$ep2/maps")"
rc2=$(wait_rc vm2 240)
rc1=$(wait_rc vm1 60)
grep -E "packet loss|round-trip|sender|receiver|== iperf3" "$work/vm2.console" | sed 's/^/  vm2: /'
[[ $rc2 == 0 ]] || fail "vm2's checks failed (rc $rc2)"
[[ $rc1 == 0 ]] || fail "vm1's iperf3 server failed (rc $rc1)"
# Every stream must really have moved data (a segment with a bad checksum is dropped by
# the guest's TCP and the stream crawls): each receiver at 10 Mbit/s at least.
awk '/== iperf3/ { name = $0; sub(/.*== iperf3 /, "", name) }
     / receiver$/ { for (i = 1; i < NF; i++) if ($(i+1) == "Gbits/sec") rate = $i
                    if (rate + 0 < 0.01) { print name ": " rate " Gbit/s"; bad = 1 } }
     END { exit bad }' <(tr -d '\r' <"$work/vm2.console") || fail "an iperf3 stream moved (almost) nothing"
ip netns exec vswitch-host ping -c 3 -i 0.2 -W 2 -q 10.0.0.1 >/dev/null 2>&1 && fail "vm1 should be off by now"

echo "== vm1 restarted, then its endpoint killed with -9 while vm1 pings the namespace"
# The guest pings for 15 s; meanwhile vswitchd restarts the killed endpoint, QEMU
# (reconnect=1) connects again and sets the device up anew: the last 5 pings must pass.
vm vm1 52:54:00:00:03:01 10.0.0.1 "sh -c '$reach' _ 10.0.0.3 || exit 20
changes=\$(cat /sys/class/net/eth0/carrier_changes)
echo VMTEST-PINGING
ping -c 75 -i 0.2 -W 1 10.0.0.3 >/tmp/ping.txt; tail -2 /tmp/ping.txt
ping -c 5 -i 0.2 -W 2 10.0.0.3 || exit 21
echo VMTEST-CARRIER-CHANGES=\$((\$(cat /sys/class/net/eth0/carrier_changes) - changes)) carrier=\$(cat /sys/class/net/eth0/carrier)"
deadline=$((SECONDS + 240))
until grep -q "VMTEST-PINGING" "$work/vm1.console"; do
  grep -q "VMTEST-RC" "$work/vm1.console" && fail "vm1 stopped before pinging: $(grep VMTEST-RC "$work/vm1.console")"
  ((SECONDS < deadline)) || fail "the restarted vm1 never reached the namespace"
  sleep 0.2
done
sleep 2  # a few pings through the original endpoint first (part of the scenario, not a wait for state)
victim=$(endpoint_pid vm1)
kill -9 "$victim"
rc1=$(wait_rc vm1 240)
grep -E "packet loss|round-trip" "$work/vm1.console" | sed 's/^/  vm1: /'
[[ $rc1 == 0 ]] || fail "vm1 lost the namespace after its endpoint was killed and restarted (rc $rc1)"
grep -q "endpoint vm1 (pid $victim) killed by signal 9" "$work/vswitchd.log" || fail "vswitchd did not see the kill"
# The link follows the endpoint: QEMU sets it down when the connection drops and up when
# it connects again (VIRTIO_NET_F_STATUS, a config interrupt): at least one down and one up.
carrier=$(grep -o "VMTEST-CARRIER-CHANGES=[0-9]* carrier=[0-9]" "$work/vm1.console" | tail -1)
echo "  vm1: link during the endpoint's restart: $carrier"
[[ $carrier =~ CHANGES=([0-9]+)\ carrier=1 ]] && ((BASH_REMATCH[1] >= 2)) ||
  fail "vm1's link did not go down and come back up with its endpoint ($carrier)"

echo "== vswitchd log"
sed 's/^/  /' "$work/vswitchd.log"
echo "== vswitchctl stats"
"$bin/vswitchctl" --config "$cfg" stats
echo "vm-demo: passed ($arch guests)"
