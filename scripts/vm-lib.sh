# Sourced by scripts/vm-demo.sh and scripts/bench-vhost.sh: boots the guest image of
# scripts/vm-image.sh under QEMU and waits for the command it runs.
#   vm_boot DIR NAME MAC IP COMMAND NETDEV-ARGS [DEVICE-OPTIONS]
# boots guest NAME with one virtio-net NIC (INTx: vectors=0, because QEMU 7.2 crashes when
# a vhost-user virtio-net-pci device without KVM irqfds enables MSI-X) on the given -netdev
# (its id must be net0), runs COMMAND in the guest, which prints VMTEST-RC=<status> and
# powers off; the console goes to DIR/NAME.console (opened O_APPEND, so a days-long soak
# may truncate it once read), the QEMU pid to VM_PID. Guest RAM is a
# shared memfd, which a vhost-user back-end needs and a TAP netdev does not mind.
# Prefix the command with VM_EXEC (e.g. "ip netns exec NS") to run QEMU elsewhere.
# Environment:
#   VM_ARCH   x86_64 (default: -M pc, console ttyS0) | arm64 (-M virt -cpu cortex-a53,
#             console ttyAMA0)
#   VM_IMAGE  the directory with vmlinuz and initrd.img (default build/vm, build/vm-arm64)
#   VM_ACCEL  tcg (default) | kvm (-accel kvm -cpu host; for arm64 e.g. inside an emulated
#             arm64 board that has /dev/kvm, with the host's GIC version)
#   VM_MEM    guest RAM (default 256M; a bare number is MiB)   VM_SMP  vCPUs (default 1)
#   VM_QEMU   the QEMU binary (default qemu-system-x86_64 or qemu-system-aarch64)
vm_boot() {
  local dir=$1 name=$2 mac=$3 ip=$4 cmd=$5 netdev=$6 devopts=${7:-} cmd64
  local arch=${VM_ARCH:-x86_64} accel=${VM_ACCEL:-tcg} mem=${VM_MEM:-256M} smp=${VM_SMP:-1}
  local image qemu console machine cpu=()
  [[ $mem =~ ^[0-9]+$ ]] && mem=${mem}M
  case $arch in
    x86_64|amd64)
      image=${VM_IMAGE:-build/vm} qemu=${VM_QEMU:-qemu-system-x86_64} console=ttyS0 machine=pc ;;
    arm64|aarch64)
      image=${VM_IMAGE:-build/vm-arm64} qemu=${VM_QEMU:-qemu-system-aarch64} console=ttyAMA0 machine=virt
      cpu=(-cpu cortex-a53) ;;
    *) echo "vm_boot: VM_ARCH must be x86_64 or arm64, not '$arch'" >&2; return 1 ;;
  esac
  case $accel in
    tcg) ;;
    kvm)
      cpu=(-cpu host)
      [[ $machine == virt ]] && machine=virt,gic-version=host ;;
    *) echo "vm_boot: VM_ACCEL must be tcg or kvm, not '$accel'" >&2; return 1 ;;
  esac
  [[ -f $image/vmlinuz && -f $image/initrd.img ]] ||
    { echo "vm_boot: no $image/vmlinuz or initrd.img (scripts/vm-image.sh --arch $arch)" >&2; return 1; }
  cmd64=$(printf '%s' "$cmd" | base64 -w0)
  : >"$dir/$name.console"
  # shellcheck disable=SC2086  # VM_EXEC and NETDEV-ARGS are word lists
  ${VM_EXEC:-} "$qemu" -accel "$accel" -M "$machine" "${cpu[@]}" -m "$mem" -smp "$smp" \
    -object memory-backend-memfd,id=mem,size="$mem",share=on -numa node,memdev=mem \
    $netdev -device "virtio-net-pci,netdev=net0,mac=$mac,romfile=,vectors=0${devopts:+,$devopts}" \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "console=$console panic=-1 loglevel=4 vm.name=$name vm.ip=$ip/24 vm.cmd64=$cmd64" \
    -display none -chardev "file,id=console0,path=$dir/$name.console,append=on" -serial chardev:console0 \
    -monitor none -no-reboot &
  VM_PID=$!
}

# vm_console_wait CONSOLE TEXT SECONDS: waits for TEXT on a guest's console file. Returns 0
# once it is there, 1 when the guest's command ended without it (VMTEST-RC on the
# console), 2 after SECONDS.
vm_console_wait() {
  local console=$1 text=$2 deadline=$((SECONDS + $3))
  until grep -a -q -- "$text" "$console"; do
    if grep -a -q "VMTEST-RC" "$console"; then
      # The command may have printed TEXT and ended between the two reads: its last line
      # and its status come milliseconds apart. Ended, the console is final: read again.
      grep -a -q -- "$text" "$console" && return 0
      return 1
    fi
    ((SECONDS < deadline)) || return 2
    sleep 0.2
  done
}

# vm_rc DIR NAME SECONDS: prints the guest's command status once it has finished;
# returns 1 (printing nothing) if it did not within SECONDS.
vm_rc() {
  local deadline=$((SECONDS + $3))
  until grep -q "VMTEST-RC=" "$1/$2.console"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
  grep -o "VMTEST-RC=[0-9]*" "$1/$2.console" | tail -1 | cut -d= -f2
}

# vhost_netdev SOCKET: the -netdev arguments of a vhost-user NIC that reconnects.
vhost_netdev() { echo "-chardev socket,id=chr0,path=$1,reconnect=1 -netdev vhost-user,id=net0,chardev=chr0"; }
# tap_netdev IFNAME: a TAP NIC without vhost-net (the kernel's vhost would not be comparable).
tap_netdev() { echo "-netdev tap,id=net0,ifname=$1,script=no,downscript=no,vhost=off"; }

# vm_demo_switch DIR: the host side of configs/vm-demo.toml: the namespace vswitch-host with
# its TAP at 10.0.0.3, then vswitchd (log in DIR/vswitchd.log, pid in VM_DAEMON_PID), waiting
# until its three endpoints are up. Returns 1 if they are not within 10 s.
vm_demo_switch() {
  VM_DAEMON_PID=""
  ip netns del vswitch-host 2>/dev/null || true
  ip netns add vswitch-host
  ip -n vswitch-host link set lo up
  ip -n vswitch-host tuntap add dev vsw-host mode tap
  ip -n vswitch-host link set vsw-host address 02:00:00:00:03:03 up
  ip -n vswitch-host addr add 10.0.0.3/24 dev vsw-host
  "${VSWITCH_BIN:-build/bin}/vswitchd" --config configs/vm-demo.toml 2>"$1/vswitchd.log" &
  VM_DAEMON_PID=$!
  local deadline=$((SECONDS + 10))
  until [[ $("${VSWITCH_BIN:-build/bin}/vswitchctl" --config configs/vm-demo.toml ports 2>/dev/null | awk '$4 == "up"' | wc -l) -eq 3 ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
