#include "vswitch/control/syscall_filter.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VSWITCH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define VSWITCH_SANITIZED 1
#endif
#endif

namespace vswitch {

std::string_view to_string(SyscallFilter f) {
  switch (f) {
    case SyscallFilter::kOff:
      return "off";
    case SyscallFilter::kLog:
      return "log";
    case SyscallFilter::kEnforce:
      return "enforce";
  }
  return "?";
}

namespace {

#if defined(__x86_64__)
[[maybe_unused]] constexpr std::uint32_t kArch = AUDIT_ARCH_X86_64;
[[maybe_unused]] constexpr const char* kArchName = "x86_64";
#elif defined(__aarch64__)
[[maybe_unused]] constexpr std::uint32_t kArch = AUDIT_ARCH_AARCH64;
[[maybe_unused]] constexpr const char* kArchName = "aarch64";
#else
#define VSWITCH_NO_SYSCALL_FILTER 1
#endif

#if !defined(VSWITCH_SANITIZED) && !defined(VSWITCH_NO_SYSCALL_FILTER)

// Allowed with any arguments. Each is named where the endpoint's code (or the C and C++
// runtime under it) makes it; a name this architecture lacks (open, poll, ... on aarch64)
// is left out by the #ifdef.
constexpr long kAllowed[] = {
    // Frames and control messages on descriptors the process holds. recvmsg takes the
    // VMM's descriptors (SCM_RIGHTS); nothing is ever sent with one: sendmsg is refused,
    // or an endpoint could hand a doorbell it shares with its peers to its VMM, which
    // runs under no filter and could make it blocking.
    SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_recvmsg, SYS_recvfrom, SYS_sendto,
    // vhost-user: a reconnecting VMM on the listening socket, its credentials.
    SYS_accept4, SYS_getsockopt, SYS_close,
    // Waiting: epoll on the endpoint's own set, doorbells and kicks.
    SYS_epoll_ctl, SYS_epoll_pwait, SYS_epoll_create1, SYS_ppoll,
#ifdef SYS_epoll_wait
    SYS_epoll_wait,
#endif
#ifdef SYS_epoll_pwait2
    SYS_epoll_pwait2,
#endif
#ifdef SYS_poll
    SYS_poll,
#endif
    // Guest memory: descriptors checked (fstat, seals through fcntl below, their
    // /proc/self/fd link), mapped and unmapped; the allocator's own memory.
    SYS_fstat, SYS_newfstatat, SYS_statx, SYS_fstatfs, SYS_readlinkat, SYS_munmap, SYS_mremap, SYS_madvise,
    SYS_brk,
#ifdef SYS_readlink
    SYS_readlink,
#endif
#ifdef SYS_stat
    SYS_stat,
#endif
    // Threads (the event log's writer, made before the filter: with TSYNC it may take the
    // filter before its own start-up has run, which registers rseq and the robust futex
    // list; futex is below, limited to what mutexes and condition variables use) and time.
    SYS_set_robust_list, SYS_sched_yield,
#ifdef SYS_rseq
    SYS_rseq,
#endif
    SYS_nanosleep, SYS_clock_nanosleep, SYS_clock_gettime, SYS_clock_getres,
    SYS_gettimeofday, SYS_getpid, SYS_gettid, SYS_getppid, SYS_getrandom, SYS_sched_getaffinity,
    // Signals: returning from a handler and masks. kill is refused; tgkill (raise and
    // abort) is below, limited to this process.
    SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_restart_syscall,
    // The vhost-user SIGBUS guard: a SIGBUS outside guest memory (a real bug) gets its
    // default action back (sigaction) and is raised again, so that it still ends the
    // process with SIGBUS, not with this list's SIGSYS. (Repairing a fault in guest memory
    // takes only mmap without PROT_EXEC, below.) It changes nothing beyond this process:
    // a handler that swallowed SIGSYS would only see refused calls fail, never run.
    SYS_rt_sigaction,
    // Leaving.
    SYS_exit, SYS_exit_group,
};

// Offsets into struct seccomp_data the filter reads.
constexpr std::uint32_t kNrOffset = offsetof(struct seccomp_data, nr);
constexpr std::uint32_t kArchOffset = offsetof(struct seccomp_data, arch);
// The low 32 bits of argument n (both architectures here are little-endian).
constexpr std::uint32_t arg_low(int n) {
  return static_cast<std::uint32_t>(offsetof(struct seccomp_data, args) + 8 * static_cast<std::size_t>(n));
}

sock_filter stmt(std::uint16_t code, std::uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter jump(std::uint16_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
  return sock_filter{code, jt, jf, k};
}

std::vector<sock_filter> build_program(std::uint32_t refuse, std::uint32_t self) {
  constexpr std::uint16_t kLoadWord = BPF_LD | BPF_W | BPF_ABS;
  constexpr std::uint16_t kIfEqual = BPF_JMP | BPF_JEQ | BPF_K;
  constexpr std::uint16_t kIfAnyBit = BPF_JMP | BPF_JSET | BPF_K;
  constexpr std::uint16_t kReturn = BPF_RET | BPF_K;
  std::vector<sock_filter> p;
  // A call made through another architecture's table (the x86 int 0x80 gate, the x32
  // ABI) has other numbers: refuse it outright, whatever the mode.
  p.push_back(stmt(kLoadWord, kArchOffset));
  p.push_back(jump(kIfEqual, kArch, 1, 0));
  p.push_back(stmt(kReturn, SECCOMP_RET_KILL_PROCESS));
  p.push_back(stmt(kLoadWord, kNrOffset));
#if defined(__x86_64__)
  constexpr std::uint32_t kX32Bit = 0x40000000;  // __X32_SYSCALL_BIT
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 0, 1));
  p.push_back(stmt(kReturn, SECCOMP_RET_KILL_PROCESS));
#endif
  for (const long nr : kAllowed) {
    p.push_back(jump(kIfEqual, static_cast<std::uint32_t>(nr), 0, 1));
    p.push_back(stmt(kReturn, SECCOMP_RET_ALLOW));
  }
  // mmap and mprotect: never executable memory (the endpoint maps guest memory and ring
  // records as data; nothing it does loads code after it starts).
  for (const long nr : {long{SYS_mmap}, long{SYS_mprotect}}) {
    p.push_back(jump(kIfEqual, static_cast<std::uint32_t>(nr), 0, 4));
    p.push_back(stmt(kLoadWord, arg_low(2)));  // prot
    p.push_back(jump(kIfAnyBit, PROT_EXEC, 0, 1));
    p.push_back(stmt(kReturn, refuse));
    p.push_back(stmt(kReturn, SECCOMP_RET_ALLOW));
  }
  // fcntl: reading flags and seals, and setting status flags only with O_NONBLOCK in them:
  // nothing this process holds may ever be made blocking (F_SETFL acts on the open file,
  // shared with the daemon and the peers for a doorbell, with the VMM for a kick or call).
  {
    p.push_back(jump(kIfEqual, static_cast<std::uint32_t>(SYS_fcntl), 0, 9));
    p.push_back(stmt(kLoadWord, arg_low(1)));  // cmd
    // Offsets count from the next instruction: the allow is 6, 5 and 4 ahead.
    p.push_back(jump(kIfEqual, F_GETFL, 6, 0));
    p.push_back(jump(kIfEqual, F_GETFD, 5, 0));
    p.push_back(jump(kIfEqual, F_GET_SEALS, 4, 0));
    p.push_back(jump(kIfEqual, F_SETFL, 0, 2));
    p.push_back(stmt(kLoadWord, arg_low(2)));  // the new flags
    p.push_back(jump(kIfAnyBit, O_NONBLOCK, 1, 0));
    p.push_back(stmt(kReturn, refuse));
    p.push_back(stmt(kReturn, SECCOMP_RET_ALLOW));
  }
  // ioctl: only TUNSETCARRIER, a TAP endpoint's link state (vswitchctl link) on the one
  // TAP it holds; on any other descriptor the kernel answers ENOTTY. The kernel takes
  // the command as 32 bits (unsigned int), so the low word is the whole of it.
  {
    p.push_back(jump(kIfEqual, static_cast<std::uint32_t>(SYS_ioctl), 0, 4));
    p.push_back(stmt(kLoadWord, arg_low(1)));  // cmd
    p.push_back(jump(kIfEqual, static_cast<std::uint32_t>(TUNSETCARRIER), 1, 0));
    p.push_back(stmt(kReturn, refuse));
    p.push_back(stmt(kReturn, SECCOMP_RET_ALLOW));
  }
  // tgkill: only to a thread of this process (raise, abort); a signal to any other
  // process of the same uid (with endpoint_uid_base = 0 or a non-root daemon, that is
  // vswitchd and every endpoint) is refused. A pid is 32 bits: the high word must be 0.
  {
    p.push_back(jump(kIfEqual, static_cast<std::uint32_t>(SYS_tgkill), 0, 6));
    p.push_back(stmt(kLoadWord, arg_low(0) + 4));  // tgid, high word
    p.push_back(jump(kIfEqual, 0, 0, 2));
    p.push_back(stmt(kLoadWord, arg_low(0)));  // tgid, low word
    p.push_back(jump(kIfEqual, self, 1, 0));
    p.push_back(stmt(kReturn, refuse));
    p.push_back(stmt(kReturn, SECCOMP_RET_ALLOW));
  }
  // futex: the operations of mutexes, condition variables and joins (glibc's), private
  // or shared, either clock; not the priority-inheritance or requeue operations, which
  // nothing here uses.
  {
    constexpr std::uint32_t kOpFlags = 128 | 256;  // FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME
    p.push_back(jump(kIfEqual, static_cast<std::uint32_t>(SYS_futex), 0, 8));
    p.push_back(stmt(kLoadWord, arg_low(1)));  // op
    p.push_back(stmt(BPF_ALU | BPF_AND | BPF_K, ~kOpFlags));
    p.push_back(jump(kIfEqual, 0, 4, 0));   // FUTEX_WAIT
    p.push_back(jump(kIfEqual, 1, 3, 0));   // FUTEX_WAKE
    p.push_back(jump(kIfEqual, 9, 2, 0));   // FUTEX_WAIT_BITSET
    p.push_back(jump(kIfEqual, 10, 1, 0));  // FUTEX_WAKE_BITSET
    p.push_back(stmt(kReturn, refuse));
    p.push_back(stmt(kReturn, SECCOMP_RET_ALLOW));
  }
  p.push_back(stmt(kReturn, refuse));
  return p;
}

// Writes "vswitch: seccomp refused system call N (ARCH)" with nothing but write(2), then
// lets SIGSYS end the process: the handler was installed with SA_RESETHAND, so the
// disposition is back to the default (terminate, core) and the raise below is delivered
// when the handler returns.
void on_refused_call(int, siginfo_t* info, void*) {
  char buf[96];
  std::size_t n = 0;
  const auto put = [&](const char* s) {
    while (*s != '\0' && n < sizeof buf) buf[n++] = *s++;
  };
  put("vswitch: seccomp refused system call ");
  char digits[12];
  int d = 0;
  unsigned v = static_cast<unsigned>(info->si_syscall);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && d < 12);
  while (d > 0 && n < sizeof buf) buf[n++] = digits[--d];
  put(" (");
  put(kArchName);
  put(")\n");
  (void)!::write(STDERR_FILENO, buf, n);
  ::raise(SIGSYS);
}

#endif

}  // namespace

bool syscall_filter_missing_for_sanitizer() noexcept {
#if defined(VSWITCH_SANITIZED)
  return true;
#else
  return false;
#endif
}

bool syscall_filter_supported() noexcept {
#if defined(VSWITCH_SANITIZED) || defined(VSWITCH_NO_SYSCALL_FILTER)
  return false;
#else
  return true;
#endif
}

sys::Status<std::string> restrict_system_calls(SyscallFilter mode) {
  if (mode == SyscallFilter::kOff) return {};
#if defined(VSWITCH_SANITIZED)
  return sys::Unexpected(std::string("this build runs under a sanitizer, whose runtime makes system calls no allow-list foresees"));
#elif defined(VSWITCH_NO_SYSCALL_FILTER)
  return sys::Unexpected(std::string("no system call allow-list for this architecture"));
#else
  const std::uint32_t refuse = mode == SyscallFilter::kLog ? SECCOMP_RET_LOG : SECCOMP_RET_TRAP;
  if (mode == SyscallFilter::kEnforce) {
    struct sigaction sa {};
    sa.sa_sigaction = on_refused_call;
    sa.sa_flags = static_cast<int>(SA_SIGINFO | SA_RESETHAND);  // SA_RESETHAND is 0x80000000u
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0)
      return sys::Unexpected("sigaction(SIGSYS): " + std::string(std::strerror(errno)));
    // A SIGSYS blocked when the trap comes would be fatal at once, without the message.
    sigset_t sys_only;
    sigemptyset(&sys_only);
    sigaddset(&sys_only, SIGSYS);
    if (::sigprocmask(SIG_UNBLOCK, &sys_only, nullptr) != 0)
      return sys::Unexpected("sigprocmask: " + std::string(std::strerror(errno)));
  }
  std::vector<sock_filter> program = build_program(refuse, static_cast<std::uint32_t>(::getpid()));
  const sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
  const long r = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
  if (r == 0) return {};
  if (r > 0)
    return sys::Unexpected("seccomp: thread " + std::to_string(r) + " cannot take the filter");
  return sys::Unexpected("seccomp(SECCOMP_SET_MODE_FILTER): " + std::string(std::strerror(errno)) +
                         (errno == EINVAL ? " (a kernel without CONFIG_SECCOMP_FILTER; switch.seccomp = \"off\" runs without)" : ""));
#endif
}

SyscallFilter syscall_filter_for(std::string_view setting) noexcept {
  if (!syscall_filter_supported()) return SyscallFilter::kOff;
  if (setting == "enforce") return SyscallFilter::kEnforce;
  if (setting == "log") return SyscallFilter::kLog;
  return SyscallFilter::kOff;
}

}  // namespace vswitch
