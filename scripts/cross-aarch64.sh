#!/usr/bin/env bash
# Builds the libraries and unit tests for aarch64 (the ZCU102's Cortex-A53) with Debian's
# cross toolchain and runs them under qemu-user. Note: qemu's TCG runs on the x86 host's
# memory model, so this proves the code builds and works on aarch64, not that it is free
# of ARM-only reorderings (that takes the real board; see tests/model for the handshake).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps

build=build-aarch64
# The header-only dependencies are architecture-independent: expose just those to the
# cross compiler (never the host's /usr/include, which holds x86 glibc headers).
mkdir -p "$build/cross-include"
for d in boost toml++ concurrentqueue; do
  ln -sfn "/usr/include/$d" "$build/cross-include/$d"
done

cmake -S . -B "$build" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DVSWITCH_CROSS_INCLUDE="$PWD/$build/cross-include" \
  -DVSWITCH_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build"
aarch64-linux-gnu-readelf -h "$build/bin/shm_frame_ring_test" | grep -q "AArch64" || { echo "not an aarch64 binary"; exit 1; }
# The full-size stress runs would take long under emulation: a fraction of them.
(cd "$build" && VSWITCH_STRESS_SCALE=0.02 ctest --output-on-failure -L 'unit|stress|fuzz')
