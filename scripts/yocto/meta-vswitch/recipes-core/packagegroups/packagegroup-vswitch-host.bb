SUMMARY = "A multi-VM host: vswitch, QEMU with KVM, and the tools to check it"
LICENSE = "MIT"

# Per machine: qemu-system-aarch64 on the ZCU102, qemu-system-x86-64 on an x86 host.
PACKAGE_ARCH = "${MACHINE_ARCH}"
inherit packagegroup

VSWITCH_QEMU_SYSTEM ?= "qemu-system-aarch64"
VSWITCH_QEMU_SYSTEM:x86-64 ?= "qemu-system-x86-64"

RDEPENDS:${PN} = "\
    vswitch \
    ${VSWITCH_QEMU_SYSTEM} \
    qemu-img \
    iperf3 \
    iproute2 \
"
# The kernel's KVM, vhost and TUN support: modules where the kernel builds them as such.
# Board kernels often build KVM in (CONFIG_KVM=y, no package): recommended, not required,
# so an image whose kernel has them built in still builds.
RRECOMMENDS:${PN} = "kernel-module-kvm kernel-module-vhost kernel-module-vhost-net kernel-module-tun"
