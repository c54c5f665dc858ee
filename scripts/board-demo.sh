#!/usr/bin/env bash
# The emulated ZCU102 board: a 4 x Cortex-A53, 4 GiB aarch64 machine (QEMU `virt` with
# EL2, TCG) running Debian's arm64 kernel with KVM, and in it the cross-built vswitchd on
# configs/zcu102-4vm.toml with four arm64 KVM guests on its vhost-user endpoints: pings
# over every pair, iperf3 vm0 -> vm1 and over every pair, kill -9 of an endpoint with
# recovery, no bad descriptor chain, then the ring stress tests on the board's 4 vCPUs
# (scripts/board-checks.sh, the in-board part, says exactly what each check asserts).
# With --soak, scripts/soak-vm.sh then runs in the board with four guests; the PNG is
# drawn here from the CSV it writes. Exit 0 only when every check passed.
#
# Builds what it needs, cached in build-board/: cross/ (vswitchd, vswitchctl, the stress
# tests), the board's arm64 root (fetched with scripts/arm64-lib.sh), its initramfs. The repo is
# shared read-only with the board over virtio-9p, the output folder read-write: the board
# writes results.txt, the guests' consoles, vswitchd.log and the soak's CSV there while it
# runs. A board that does not finish by its deadline is killed, its console tail printed.
#   scripts/board-demo.sh [--soak DURATION [--only-soak]] [--out DIR] [--seconds N]
#     DURATION: seconds, or 30m, 12h, 3d; --only-soak: boot the board and soak, without
#     the other checks; --seconds: iperf3 duration per run (default 3);
#     default DIR: build-board/run-<date>/
# Environment: BOARD_SCALE (VSWITCH_STRESS_SCALE in the board, default 0.01),
#   BOARD_SOAK_CMD (the soak command line run in the board; default scripts/soak-vm.sh
#   with four arm64 guests), BOARD_DEADLINE (seconds for the board without the soak,
#   default 5400), VSWITCH_NO_SETUP=1 (skip scripts/setup.sh --deps).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 [--soak DURATION [--only-soak]] [--out DIR] [--seconds N]" >&2; exit 2; }
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
soak="" soak_secs=0 out="" secs=3 only_soak=0
while (($#)); do
  case $1 in
    --soak) [[ $# -ge 2 ]] || usage; soak=$2; shift 2
            soak_secs=$(duration_seconds "$soak") || { echo "board-demo: bad DURATION '$soak'" >&2; exit 2; } ;;
    --out) [[ $# -ge 2 ]] || usage; out=$2; shift 2 ;;
    --only-soak) only_soak=1; shift ;;
    --seconds) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage; secs=$2; shift 2 ;;
    *) usage ;;
  esac
done
((only_soak == 0)) || [[ -n $soak ]] || usage
[[ $(id -u) -eq 0 ]] || { echo "board-demo: needs root (apt-get, the board's root owned by root)" >&2; exit 1; }

# Host packages: the x86 qemu-system-aarch64 that emulates the board, the cross compiler,
# cpio for the initramfs, gnuplot for the soak's PNG.
need=()
for p in qemu-system-arm g++-aarch64-linux-gnu cpio gnuplot-nox; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "board-demo: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ ${VSWITCH_NO_SETUP:-0} == 1 ]] || scripts/setup.sh --deps >/dev/null

# 1. The cross build: vswitchd, vswitchctl and the two ring stress tests for aarch64,
# configured as scripts/cross-aarch64.sh does, in a folder of its own (the board runs these
# binaries for up to hours: a cross-aarch64.sh run meanwhile must not relink them).
cross=build-board/cross
mkdir -p "$cross/cross-include"
for d in boost toml++ concurrentqueue; do ln -sfn "/usr/include/$d" "$cross/cross-include/$d"; done
[[ -f $cross/build.ninja ]] ||
  cmake -S . -B "$cross" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
    -DVSWITCH_CROSS_INCLUDE="$PWD/$cross/cross-include" -DVSWITCH_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$cross" --target vswitchd vswitchctl shm_ring_lost_wakeup_test shm_ring_two_process_test \
  vswitch_syscall_filter_test |
  grep -v "^\[" || true
bins=("$cross/bin/vswitchd" "$cross/bin/vswitchctl" "$cross/bin/shm_ring_lost_wakeup_test" "$cross/bin/shm_ring_two_process_test"
  "$cross/bin/vswitch_syscall_filter_test")
for b in "${bins[@]}"; do
  readelf -h "$b" | grep -q "AArch64" || { echo "board-demo: $b is not an aarch64 binary" >&2; exit 1; }
done

# 2. The board's root: an arm64 Debian sysroot the board mounts over 9p, with the kernel,
# bash, busybox, python3 (json, tomllib), the arm64 qemu-system-aarch64 for the guests and
# every library those and the cross-built binaries load.
# shellcheck source=scripts/arm64-lib.sh
. scripts/arm64-lib.sh
bb=build-board
apt_dir=$bb/apt
root=$bb/root
packages=(busybox-static bash python3-minimal python3.11-minimal libpython3.11-minimal
          libpython3.11-stdlib qemu-system-arm iproute2 libstdc++6 libgcc-s1 libc6)
arm64_apt_init "$apt_dir"
kpkg=$(arm64_apt "$apt_dir" apt-cache depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[[ -n $kpkg ]] || { echo "board-demo: no arm64 kernel package behind linux-image-arm64" >&2; exit 1; }
want="$kpkg ${packages[*]}"
if [[ ! -f $root/.board-packages || $(cat "$root/.board-packages") != "$want" ]]; then
  echo "board-demo: fetching the board's arm64 root ($want)"
  rm -rf "$root"
  arm64_fetch "$apt_dir" "$root" "$kpkg" "${packages[@]}"
  arm64_fetch_libs "$apt_dir" "$root" "$root/usr/bin/qemu-system-aarch64" "$root/bin/bash" \
    "$root/usr/bin/python3.11" "$root"/usr/lib/python3.11/lib-dynload/*.so "$root/bin/ip" "${bins[@]}" >/dev/null
  kver=${kpkg#linux-image-}
  depmod -b "$root" "$kver"
  # mount points for the board's /init (the sysroot is read-only in the board)
  mkdir -p "$root"/{repo,out,proc,sys,dev,tmp,run,var/tmp,root,usr/local/busybox}
  echo "$want" >"$root/.board-packages"
fi
kver=${kpkg#linux-image-}
# The scripts' "#!/usr/bin/env bash" lines: the board has no coreutils, busybox is env.
[[ -e $root/usr/bin/env ]] || ln -s /bin/busybox "$root/usr/bin/env"
# libraries the cross-built binaries load must be there (a stale root fetched before a new one)
arm64_fetch_libs "$apt_dir" "$root" "${bins[@]}" >/dev/null

# The board's initramfs: busybox, virtio-pci and 9p (the modules.dep closure), /init.
initrd=$bb/initrd.img
if [[ ! -f $initrd || scripts/board-init.sh -nt $initrd || $root/.board-packages -nt $initrd ]]; then
  ir=$(mktemp -d)
  mkdir -p "$ir"/{bin,proc,sys,dev,modules,newroot}
  cp "$root/bin/busybox" "$ir/bin/busybox"
  order=()
  while read -r kind path _; do
    [[ $kind == insmod ]] || continue
    name=$(basename "$path")
    case $name in
      *.xz) xz -dc "$path" >"$ir/modules/${name%.xz}"; name=${name%.xz} ;;
      *.zst) zstd -dqc "$path" >"$ir/modules/${name%.zst}"; name=${name%.zst} ;;
      *) cp "$path" "$ir/modules/$name" ;;
    esac
    [[ " ${order[*]} " == *" $name "* ]] || order+=("$name")
  done < <(for m in virtio_pci 9pnet_virtio 9p; do modprobe -d "$root" -S "$kver" --show-depends "$m"; done)
  printf '%s\n' "${order[@]}" >"$ir/modules/order"
  cp scripts/board-init.sh "$ir/init"
  chmod +x "$ir/init"
  (cd "$ir" && find . | cpio -o -H newc --quiet) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  rm -rf "$ir"
  echo "board-demo: initramfs with modules ${order[*]}"
fi
kernel=$root/boot/vmlinuz-$kver

# The guests' image (arm64 kernel, busybox, iperf3) for the board's QEMU.
scripts/vm-image.sh --arch arm64 >/dev/null

# 3. Boot the board.
out=${out:-$bb/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/{results.txt,board.console}
# Guests nested in the emulated board move a few Mbit/s a pair at most, and TCP streams at
# full speed starve the board's four emulated CPUs (pings' round trips reach 10 s, a
# starved guest's TCP backs off for 30 s and more): TCP capped at 400 kbit/s a stream,
# UDP at 64 kbit/s, a TCP stream's floor at 10 kbit/s (a stalled flow still moves
# nothing; pings alone move less than 2 kbit/s); UDP streams have no floor beyond moving
# something: a starved nested guest's iperf3 paces UDP late (runs saw all four UDP streams
# fall to 3-30 kbit/s for 30-40 s together while the TCP streams went on), so here they
# are judged by their losses against the counted drops, the TCP ring by its floor. Floors
# and lost pings are judged after 180 s (the nested guests take that long to start every
# stream; one took 20 s to connect while all four started theirs): an iperf3 run whose
# stream has not connected in 120 s is cut off and retried (10 s on a host).
soak_cmd=${BOARD_SOAK_CMD:-"SOAK_SETUP_S=120 VM_ACCEL=kvm VSWITCH_NO_SETUP=1 VSWITCH_BIN=/repo/$cross/bin scripts/soak-vm.sh $soak --vms 4 --arch arm64 --config configs/zcu102-4vm.toml --out /out/soak --udp-rate 64K --tcp-rate 400K --tcp-floor 0.01 --udp-floor 0 --settle 180"}
cat >"$out/board.env" <<ENV
BOARD_SECONDS=$secs
BOARD_SCALE=${BOARD_SCALE:-0.01}
BOARD_BIN=/repo/$cross/bin
BOARD_SOAK=$soak
BOARD_ONLY_SOAK=$only_soak
BOARD_SOAK_CMD='${soak_cmd//\'/\'\\\'\'}'
ENV
deadline_s=$((${BOARD_DEADLINE:-5400} + soak_secs + (soak_secs > 0 ? 900 : 0)))
qemu_pid="" tail_pid=""
cleanup() {
  [[ -n $tail_pid ]] && kill "$tail_pid" 2>/dev/null || true
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
plot() {  # the soak's PNG from the CSV the board writes (the board has no gnuplot)
  [[ -s $out/soak/soak.csv ]] || return 0
  scripts/soak-plot.sh "$out/soak" "vswitch soak in the emulated ZCU102 board (TCG board, KVM guests: functional figures)" ||
    echo "board-demo: scripts/soak-plot.sh failed on $out/soak"
}

echo "board-demo: booting the board (4 x Cortex-A53, 4 GiB, EL2, TCG; deadline ${deadline_s} s); output in $out"
: >"$out/board.console"
qemu-system-aarch64 -M virt,virtualization=on -cpu cortex-a53 -smp 4 -m 4096 -accel tcg,thread=multi \
  -kernel "$kernel" -initrd "$initrd" -append "console=ttyAMA0 loglevel=4 panic=-1" \
  -virtfs "local,path=$PWD/$root,mount_tag=vsw_root,security_model=none,readonly=on" \
  -virtfs "local,path=$PWD,mount_tag=vsw_repo,security_model=none,readonly=on" \
  -virtfs "local,path=$out,mount_tag=vsw_out,security_model=none" \
  -nic none -display none -serial "file:$out/board.console" -monitor none -no-reboot &
qemu_pid=$!
start=$SECONDS
# The board's progress as it happens: its own lines, not the kernel's or the guests'.
tail -n +1 -f "$out/board.console" 2>/dev/null | grep --line-buffered -E "^(BOARD|  ping|---)" &
tail_pid=$!
next_plot=$((SECONDS + 3600))
while kill -0 "$qemu_pid" 2>/dev/null; do
  if ((SECONDS - start > deadline_s)); then
    echo "board-demo: FAILED: the board did not finish within $deadline_s s; its console's last lines:" >&2
    tail -40 "$out/board.console" >&2
    exit 1
  fi
  if ((SECONDS >= next_plot)); then plot; next_plot=$((SECONDS + 3600)); fi
  sleep 1
done
wait "$qemu_pid" || true
qemu_pid=""
sleep 0.5  # lets the console follower print the last lines it has read (output only)
kill "$tail_pid" 2>/dev/null || true
tail_pid=""
elapsed=$((SECONDS - start))
[[ -n $soak ]] && plot
exit_line=$(tr -d '\r' <"$out/board.console" | grep -o "BOARD-EXIT rc=[0-9]*.*" | tail -1 || true)
status=$(grep "^BOARD-STATUS" "$out/results.txt" 2>/dev/null | tail -1 || true)
echo "board-demo: board ran ${elapsed} s; ${exit_line:-no BOARD-EXIT line}"
echo "== results ($out/results.txt; board figures are functional: TCG-emulated CPUs, nested KVM guests)"
cat "$out/results.txt" 2>/dev/null || true
[[ -f $out/soak/soak.png ]] && echo "board-demo: soak plot $out/soak/soak.png"
if [[ $status == "BOARD-STATUS PASS" && $exit_line == "BOARD-EXIT rc=0"* ]]; then
  echo "board-demo: passed"
  exit 0
fi
echo "board-demo: FAILED (console: $out/board.console)" >&2
tail -30 "$out/board.console" >&2
exit 1
