// The system calls an endpoint process may make once it forwards: a seccomp allow-list
// (seccomp(2), SECCOMP_SET_MODE_FILTER), installed on every thread of the process after
// its frontend and loop are set up. What a running endpoint does is I/O on descriptors it
// already holds (its TAP or vhost-user connection, eventfds, its epoll), mapping a
// guest's memory from descriptors the VMM sends, and memory management; nothing else.
// Refused, among others: opening any file, making sockets, exec, ptrace, kill of another
// process, ioctl, executable mappings, and clearing O_NONBLOCK on a descriptor (an
// endpoint shares each doorbell's open file with its peers, and a blocking doorbell would
// stop every peer that rings it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shm/sys/result.hpp"

namespace vswitch {

enum class SyscallFilter : std::uint8_t {
  kOff,      // no filter
  kLog,      // a call outside the list runs, and the kernel logs it (audit / kernel log)
  kEnforce,  // a call outside the list does not run; the process says which and dies of SIGSYS
};
std::string_view to_string(SyscallFilter f);

// Installs the allow-list in `mode` on every thread of this process (SECCOMP_FILTER_FLAG_TSYNC).
// Needs NO_NEW_PRIVS (or CAP_SYS_ADMIN). In kEnforce, a refused call raises SIGSYS; this
// installs the handler that writes "seccomp: refused system call N (ARCH)" to stderr and
// lets the default action end the process. A build with a sanitizer runtime (whose own
// system calls no list can foresee) installs nothing and says so in the error.
[[nodiscard]] sys::Status<std::string> restrict_system_calls(SyscallFilter mode);

// Whether this build installs filters at all (false under AddressSanitizer/ThreadSanitizer,
// and on an architecture without an allow-list: only x86_64 and aarch64 have one).
[[nodiscard]] bool syscall_filter_supported() noexcept;
// Why not, when it does not: whether the reason is a sanitizer build (a test build, run
// without a filter) rather than the architecture (which a real deployment must not
// silently run without).
[[nodiscard]] bool syscall_filter_missing_for_sanitizer() noexcept;
// The filter endpoints install for the topology's switch.seccomp ("enforce", "log" or
// "off"): kOff where this build installs none.
[[nodiscard]] SyscallFilter syscall_filter_for(std::string_view setting) noexcept;

}  // namespace vswitch
