#!/bin/busybox sh
# /init of the emulated ZCU102 board's initramfs (scripts/board-demo.sh packs it with a
# static busybox and the 9p/virtio-pci modules). The board's root is the arm64 sysroot the
# host shares read-only over virtio-9p (tag vsw_root); the repository (vsw_repo, read-only)
# is mounted at /repo and the host's output folder (vsw_out, read-write) at /out. It
# chroots into that root and runs scripts/board-checks.sh from the repository, then
# prints "BOARD-EXIT rc=<status>" and powers the board off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod "/modules/$m" 2>/dev/null; done
bail() { echo "BOARD-EXIT rc=99 ($*)"; poweroff -f; }
new=/newroot
mkdir -p $new
opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,cache=loose,ro" vsw_root $new || bail "no 9p root (vsw_root)"
mount -t 9p -o "$opts,cache=loose,ro" vsw_repo $new/repo || bail "no 9p repository (vsw_repo)"
# cache=none: every write reaches the host at once (it reads the results while we run).
mount -t 9p -o "$opts" vsw_out $new/out || bail "no 9p output folder (vsw_out)"
mount -t proc proc $new/proc
mount -t sysfs sys $new/sys
mount -t devtmpfs dev $new/dev
# What udev would add: bash's process substitution, <(...), opens /dev/fd/N.
ln -sfn /proc/self/fd $new/dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -sfn "/proc/self/fd/${i%:*}" "$new/dev/${i#*:}"; done
mkdir -p $new/dev/shm $new/dev/pts
mount -t tmpfs -o mode=1777 shm $new/dev/shm
mount -t devpts devpts $new/dev/pts
for d in tmp:1777 var/tmp:1777 run:0755 root:0700 usr/local/busybox:0755; do
  mount -t tmpfs -o "mode=${d#*:}" tmp "$new/${d%:*}" || bail "cannot mount a tmpfs on /${d%:*}"
done
# busybox's applets in the chroot, after the real tools of the sysroot in PATH.
chroot $new /bin/busybox --install -s /usr/local/busybox
echo "BOARD-BOOTED $(cut -d' ' -f1 /proc/uptime) s"
chroot $new /bin/busybox env -i HOME=/root TERM=dumb BOARD_OUT=/out \
  PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/busybox \
  /bin/bash -c 'cd /repo && exec bash scripts/board-checks.sh' </dev/console >/dev/console 2>&1
rc=$?
sync
echo "BOARD-EXIT rc=$rc"
poweroff -f
