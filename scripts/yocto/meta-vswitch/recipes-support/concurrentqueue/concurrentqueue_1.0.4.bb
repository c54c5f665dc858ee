SUMMARY = "moodycamel::ConcurrentQueue, a lock-free multi-producer multi-consumer queue for C++11"
HOMEPAGE = "https://github.com/cameron314/concurrentqueue"
SECTION = "libs"
# Dual-licensed: simplified BSD or the Boost Software License (LICENSE.md).
LICENSE = "BSD-2-Clause | BSL-1.0"
# The BSD text as it stands at the top of concurrentqueue.h (lines 7-28, identical in
# Debian's 1.0.3 from which the checksum was taken).
LIC_FILES_CHKSUM = "file://concurrentqueue.h;beginline=7;endline=28;md5=2e2b3c8527e285df222e15b5254da3ed"

SRC_URI = "https://github.com/cameron314/concurrentqueue/archive/refs/tags/v${PV}.tar.gz;downloadfilename=concurrentqueue-${PV}.tar.gz"
SRC_URI[sha256sum] = "87fbc9884d60d0d4bf3462c18f4c0ee0a9311d0519341cac7cbd361c885e5281"
S = "${WORKDIR}/concurrentqueue-${PV}"

# Header-only: install the headers where Debian puts them (<concurrentqueue/...>), which is
# how vswitch includes them. Upstream's CMake would use concurrentqueue/moodycamel/.
do_configure[noexec] = "1"
do_compile[noexec] = "1"
do_install() {
    install -d ${D}${includedir}/concurrentqueue
    install -m 0644 ${S}/concurrentqueue.h ${S}/blockingconcurrentqueue.h ${S}/lightweightsemaphore.h \
        ${D}${includedir}/concurrentqueue/
}

ALLOW_EMPTY:${PN} = "1"
BBCLASSEXTEND = "native nativesdk"
