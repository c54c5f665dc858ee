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
  -DVSWITCH_BUILD_BENCH=OFF -DVSWITCH_HEADER_CHECK=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build"
aarch64-linux-gnu-readelf -h "$build/bin/shm_frame_ring_test" | grep -q "AArch64" || { echo "not an aarch64 binary"; exit 1; }
# The ordering the ring relies on, as the Cortex-A53 will execute it: every labelled
# release is an stlr, every acquire an ldar, every Dekker fence a dmb ish. (x86 compiles
# release/acquire to plain moves, so only this check sees a weakened ordering there.)
obj="$build/shm/CMakeFiles/vswitch_shm.dir/frame_ring.cpp.o"
listing=$(aarch64-linux-gnu-objdump -d -C "$obj" |
  awk '/^[0-9a-f]+ <.*>:$/ { fn = $0 } /\t(dmb|ldar|stlr)\t/ { print fn " " $3 " " $4 }')
expect() {  # function instruction [operand prefix]
  if ! grep -F "$1(" <<<"$listing" | grep -qE ": $2 ${3:-}"; then
    echo "aarch64 ordering check: no '$2 ${3:-}' in $1"; exit 1
  fi
}
expect "FrameProducer::publish" stlr        # [R1]
expect "FrameProducer::publish" dmb ish     # [F1]
expect "FrameConsumer::refresh_head" ldar   # [A1]
expect "FrameConsumer::release" stlr        # [R2]
expect "FrameConsumer::release" dmb ish     # [F4]
expect "FrameProducer::has_space" ldar      # [A2]
expect "FrameConsumer::peek_or_arm" dmb ish # [F2]
expect "FrameProducer::reserve_or_arm" dmb ish  # [F3]
echo "aarch64 ordering check: stlr/ldar/dmb ish at R1 A1 R2 A2 F1-F4"

# The full-size stress runs would take long under emulation: a fraction of them.
(cd "$build" && VSWITCH_STRESS_SCALE=0.02 ctest --output-on-failure -L 'unit|stress|fuzz')
