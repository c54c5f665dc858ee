#!/usr/bin/env bash
# The emulated ZCU102 board (4 x Cortex-A53 under TCG, Linux + KVM): scripts/board-demo.sh
# runs the cross-built vswitchd with four arm64 KVM guests in it (pings over every pair,
# iperf3, an endpoint killed and restarted, no bad chain) and the ring stress tests on the
# board's four vCPUs; every check must pass.
source "$(dirname "$0")/lib.sh"
require_root
"$ROOT/scripts/board-demo.sh" --out "$WORK/board" || fail "scripts/board-demo.sh"
pass "the emulated ZCU102 board: switch, four KVM guests and the stress tests"
