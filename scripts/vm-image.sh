#!/usr/bin/env bash
# Builds a small guest for the VM tests from Debian packages only: the distribution kernel,
# a busybox-static initramfs with the virtio-net (and 802.1Q) modules and iperf3 (with the libraries it
# needs). Output: OUTDIR/vmlinuz and OUTDIR/initrd.img.
#   x86_64 (default): the host's packages (linux-image-amd64, busybox-static, iperf3),
#     installed with apt-get if missing; OUTDIR defaults to build/vm.
#   arm64: Debian's arm64 packages (linux-image-arm64's versioned kernel, busybox-static,
#     iperf3 and its library closure), fetched into build/arm64/sysroot with a private apt
#     state (scripts/arm64-lib.sh: nothing is installed on the host); the modules come from
#     that kernel's own tree (depmod on the sysroot). OUTDIR defaults to build/vm-arm64.
#
# The guest's /init loads the modules, configures eth0 from `vm.ip=ADDR/PREFIX` on the
# kernel command line, runs the shell command given base64-encoded in `vm.cmd64=`, prints
# `VMTEST-RC=<status>` on the console and powers off. The same /init for both archs.
#   scripts/vm-image.sh [--arch x86_64|arm64] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
arch=x86_64
out=""
while (($#)); do
  case $1 in
    --arch) [[ $# -ge 2 ]] || { echo "vm-image: --arch needs x86_64 or arm64" >&2; exit 2; }
            arch=$2; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "vm-image: unknown option $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
case $arch in
  x86_64|amd64) arch=x86_64; out=${out:-build/vm} ;;
  arm64|aarch64) arch=arm64; out=${out:-build/vm-arm64} ;;
  *) echo "vm-image: unknown arch '$arch' (x86_64 or arm64)" >&2; exit 2 ;;
esac

need=()
host_pkgs=(cpio kmod)
[[ $arch == x86_64 ]] && host_pkgs+=(linux-image-amd64 busybox-static iperf3 qemu-system-x86)
[[ $arch == arm64 ]] && host_pkgs+=(binutils)  # readelf for the library closure
for p in "${host_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "vm-image: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,lib,lib64,proc,sys,dev,tmp,modules,etc}

if [[ $arch == x86_64 ]]; then
  # The newest installed kernel that has virtio_net as a module.
  kver=""
  for d in /lib/modules/*; do
    [[ -n $(find "$d" -name 'virtio_net.ko*' 2>/dev/null | head -1) && -f /boot/vmlinuz-$(basename "$d") ]] && kver=$(basename "$d")
  done
  [[ -n $kver ]] || { echo "vm-image: no kernel with virtio_net.ko in /lib/modules" >&2; exit 1; }
  sysroot=""
  kernel=/boot/vmlinuz-$kver
  cp /bin/busybox "$root/bin/busybox"
  # iperf3 and every library it loads, at the same paths.
  cp /usr/bin/iperf3 "$root/bin/iperf3"
  for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
else
  # shellcheck source=scripts/arm64-lib.sh
  . scripts/arm64-lib.sh
  apt_dir=build/arm64/apt
  sysroot=$(realpath -m build/arm64/sysroot)
  arm64_apt_init "$apt_dir"
  # linux-image-arm64 is a metapackage: the kernel is the versioned package it depends on.
  kpkg=$(arm64_apt "$apt_dir" apt-cache depends linux-image-arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
  [[ -n $kpkg ]] || { echo "vm-image: linux-image-arm64 names no versioned kernel package" >&2; exit 1; }
  arm64_fetch "$apt_dir" "$sysroot" "$kpkg" busybox-static iperf3
  kver=${kpkg#linux-image-}
  kernel=$sysroot/boot/vmlinuz-$kver
  [[ -f $kernel && -d $sysroot/lib/modules/$kver ]] || { echo "vm-image: $kpkg has no /boot/vmlinuz-$kver or modules" >&2; exit 1; }
  # The package ships no modules.dep (its postinst runs depmod): make one for the sysroot.
  moddir=$sysroot/lib/modules/$kver
  if [[ ! -s $moddir/modules.dep || $moddir/modules.order -nt $moddir/modules.dep ]]; then
    depmod -b "$sysroot" "$kver"
  fi
  cp "$sysroot/bin/busybox" "$root/bin/busybox"
  cp -L "$sysroot/usr/bin/iperf3" "$root/bin/iperf3"
  while read -r lib; do
    rel=${lib#"$sysroot"}
    mkdir -p "$root$(dirname "$rel")"
    cp -L "$lib" "$root$rel"
  done < <(arm64_fetch_libs "$apt_dir" "$sysroot" "$sysroot/usr/bin/iperf3")
fi

# virtio_net, virtio_pci and what they depend on, in load order (built-in ones are skipped);
# 8021q (VLAN devices, for the VLAN tests) where the kernel has it as a module.
order=()
while read -r kind path _; do
  [[ $kind == insmod ]] || continue
  name=$(basename "$path")
  case "$name" in
    *.xz) xz -dc "$path" >"$root/modules/${name%.xz}"; name=${name%.xz} ;;
    *.zst) zstd -dqc "$path" >"$root/modules/${name%.zst}"; name=${name%.zst} ;;
    *) cp "$path" "$root/modules/$name" ;;
  esac
  [[ " ${order[*]} " == *" $name "* ]] || order+=("$name")
done < <(for m in virtio_pci virtio_net; do modprobe ${sysroot:+-d "$sysroot"} -S "$kver" --show-depends "$m"; done
         modprobe ${sysroot:+-d "$sysroot"} -S "$kver" --show-depends 8021q 2>/dev/null || true)
[[ " ${order[*]} " == *" virtio_net.ko "* ]] || { echo "vm-image: no virtio_net module for $kver" >&2; exit 1; }
printf '%s\n' "${order[@]}" >"$root/modules/order"

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /modules/order); do insmod /modules/$m 2>/dev/null; done
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p"; }
name=$(arg vm.name)
ip link set lo up
for i in $(seq 50); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
ip link set eth0 up
ip addr add "$(arg vm.ip)" dev eth0
echo "VMTEST-READY $name"
echo "$(arg vm.cmd64)" | base64 -d >/tmp/cmd.sh
sh /tmp/cmd.sh
echo "VMTEST-RC=$?"
poweroff -f
INIT
chmod +x "$root/init"
# Written beside and renamed into place, so that a guest booting from OUTDIR meanwhile (another
# script) reads either the old image or the new one, never half of one.
mkdir -p "$out"
cp "$kernel" "$out/vmlinuz.tmp"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "vm-image: $arch $out/vmlinuz ($kver) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1), modules: ${order[*]})"
