SUMMARY = "vswitch: multicore inter-VM virtual switch over shared memory"
DESCRIPTION = "vswitchd runs a topology (TOML) of endpoints - vhost-user VMs, TAP devices, \
traffic generators - one pinned process each, exchanging frames through shared-memory \
rings; vswitchctl reads its ports, MAC tables and counters."
HOMEPAGE = "https://github.com/vswitch/vswitch"
SECTION = "net"
# The source tree carries no license file yet: replace with the real license (and
# LIC_FILES_CHKSUM) before distributing an image.
LICENSE = "CLOSED"

# Point VSWITCH_GIT_URI at your clone (local.conf), e.g.
#   VSWITCH_GIT_URI = "git:///home/me/vswitch;protocol=file"
# and pin SRCREV to the commit you ship (AUTOREV follows the branch, fine for development).
VSWITCH_GIT_URI ?= "git://github.com/vswitch/vswitch.git;protocol=https"
VSWITCH_GIT_BRANCH ?= "main"
SRC_URI = "${VSWITCH_GIT_URI};branch=${VSWITCH_GIT_BRANCH}"
SRCREV ?= "${AUTOREV}"
PV .= "+git"
S = "${WORKDIR}/git"

# Header-only at build time: boost (interprocess), toml++, moodycamel concurrentqueue.
DEPENDS = "boost tomlplusplus concurrentqueue"

inherit cmake pkgconfig systemd

# No unit tests, benchmark or GoogleTest in the image; the unit goes where this
# distribution's systemd looks (/lib/systemd/system, or /usr/lib/... with usrmerge).
EXTRA_OECMAKE = "-DVSWITCH_BUILD_TESTS=OFF -DVSWITCH_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Release -DVSWITCH_SYSTEMD_UNITDIR=${systemd_system_unitdir}"

# Which topology the image runs at boot: /etc/vswitch/${VSWITCH_TOPOLOGY}.toml, the
# instance of the template unit vswitchd@.service. The default is the example for the
# ZCU102's four VMs; a bbappend or local.conf can install its own topology and set this.
VSWITCH_TOPOLOGY ?= "zcu102-4vm"
SYSTEMD_SERVICE:${PN} = "vswitchd@${VSWITCH_TOPOLOGY}.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    install -d ${D}${sysconfdir}/vswitch
    install -m 0644 ${S}/configs/zcu102-4vm.toml ${D}${sysconfdir}/vswitch/zcu102-4vm.toml
}

# Packaging: binaries, unit and /etc/vswitch in ${PN} (bitbake.conf's defaults plus the
# systemd class); the example topologies with them; --help text and man pages in ${PN}-doc.
FILES:${PN} += "${datadir}/vswitch"
CONFFILES:${PN} = "${sysconfdir}/vswitch/zcu102-4vm.toml"

# At run time vswitchd needs only libc and libstdc++ (found by the shlib scan); the VMs it
# serves need QEMU with vhost-user: packagegroup-vswitch-host.
