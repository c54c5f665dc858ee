#!/usr/bin/env bash
# Builds a small guest for the VM tests from Debian packages only: the distribution kernel
# (linux-image-amd64), a busybox-static initramfs with the virtio-net modules and iperf3
# (with the libraries it needs). Output: build/vm/vmlinuz and build/vm/initrd.img.
#
# The guest's /init loads the modules, configures eth0 from `vm.ip=ADDR/PREFIX` on the
# kernel command line, runs the shell command given base64-encoded in `vm.cmd64=`, prints
# `VMTEST-RC=<status>` on the console and powers off.
#   scripts/vm-image.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/vm}
need=()
for p in linux-image-amd64 busybox-static iperf3 cpio qemu-system-x86; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "vm-image: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The newest installed kernel that has virtio_net as a module.
kver=""
for d in /lib/modules/*; do
  [[ -n $(find "$d" -name 'virtio_net.ko*' 2>/dev/null | head -1) && -f /boot/vmlinuz-$(basename "$d") ]] && kver=$(basename "$d")
done
[[ -n $kver ]] || { echo "vm-image: no kernel with virtio_net.ko in /lib/modules" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,lib,lib64,proc,sys,dev,tmp,modules,etc}
cp /bin/busybox "$root/bin/busybox"
# iperf3 and every library it loads, at the same paths.
cp /usr/bin/iperf3 "$root/bin/iperf3"
for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# virtio_net, virtio_pci and what they depend on, in load order.
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
done < <(modprobe -S "$kver" --show-depends virtio_pci; modprobe -S "$kver" --show-depends virtio_net)
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
mkdir -p "$out"
cp "/boot/vmlinuz-$kver" "$out/vmlinuz"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$out/initrd.img"
echo "vm-image: $out/vmlinuz ($kver) and $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1), modules: ${order[*]})"
