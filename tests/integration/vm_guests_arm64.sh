#!/usr/bin/env bash
# arm64 guests (qemu-system-aarch64 -M virt -cpu cortex-a53 under TCG, Debian's arm64
# kernel and its virtio-net driver) on vhost-user endpoints, plus a namespace on a TAP
# endpoint: `scripts/vm-demo.sh --arch arm64` must pass, i.e. pings, iperf3 VM-to-VM and
# VM-to-namespace both ways with the same feature combinations as on x86, the memory table
# of `virt` (one region) mapped by the endpoint, and a guest whose endpoint is killed with
# -9 reconnecting with its link going down and up. The arm64 packages are fetched into
# build/arm64 with a private apt state (scripts/arm64-lib.sh) the first time.
source "$(dirname "$0")/lib.sh"
require_root
command -v qemu-system-aarch64 >/dev/null || fail "qemu-system-aarch64 missing (scripts/setup.sh installs qemu-system-arm)"
timeout 1200 "$ROOT/scripts/vm-demo.sh" --arch arm64 --seconds 3 || fail "scripts/vm-demo.sh --arch arm64"
pass "two arm64 guests and a namespace through vswitch; a restarted guest reconnects"
