#!/usr/bin/env bash
# Installs every Debian package vswitch needs (non-interactive, idempotent, quick when all
# is present), then configures and builds into build/.
#   scripts/setup.sh            packages + build
#   scripts/setup.sh --deps     packages only
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ cmake ninja-build pkg-config make     # build
  libboost-dev                              # Boost.Interprocess (regions), boost.lockfree (bench baseline)
  libtomlplusplus-dev                       # topologies
  libconcurrentqueue-dev                    # off-data-path queues (control, log events)
  libgtest-dev                              # tests
  liburing-dev                              # vswitch-bench tap-io (io_uring against readv/writev on a TAP)
  clang libclang-rt-14-dev                  # sanitizer builds (TSan, ASan+UBSan), fuzzers
  clang-tidy                                # lint (scripts/clang-tidy.sh, checks in .clang-tidy)
  spin gcc                                  # model checking of the sleep handshake
  g++-aarch64-linux-gnu qemu-user           # aarch64 cross build, run under emulation
  iproute2 iperf3 iputils-ping python3      # demo and integration tests (namespaces, TAPs, traffic)
  fping                                     # the 32- and 62-endpoint mesh test: every pair at once
  prometheus curl                           # the /metrics test: a real Prometheus server scrapes vswitchd
  tshark                                    # the capture test: tshark reads vswitchctl capture's pcapng
  dpdk-dev                                  # dpdk-testpmd: virtio-user as an independent vhost-user front-end
  qemu-system-x86 linux-image-amd64         # real guests (TCG) with the Linux virtio-net driver
  busybox-static cpio                       # ... and their initramfs (scripts/vm-image.sh)
  qemu-system-arm kmod binutils             # arm64 guests (qemu-system-aarch64, TCG); depmod/modprobe and readelf
                                            # on the arm64 kernel and libraries fetched by scripts/arm64-lib.sh
  systemd man-db                            # systemd-analyze verify of the installed unit (its man pages)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ "${1:-}" == "--deps" ]] && exit 0

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
