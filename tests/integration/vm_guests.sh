#!/usr/bin/env bash
# Real QEMU guests (TCG) with the Linux virtio-net driver on vhost-user endpoints, plus a
# namespace on a TAP endpoint: scripts/vm-demo.sh (pings, iperf3 VM-to-VM and
# VM-to-namespace, one VM restarted) must pass.
source "$(dirname "$0")/lib.sh"
require_root
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 missing (scripts/setup.sh installs it)"
"$ROOT/scripts/vm-demo.sh" --seconds 3 || fail "scripts/vm-demo.sh"
pass "two guests and a namespace through vswitch; a restarted guest reconnects"
