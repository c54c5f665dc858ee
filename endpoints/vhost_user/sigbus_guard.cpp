#include "endpoints/vhost_user/sigbus_guard.hpp"

#include <signal.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace vswitch::endpoints::vhost_user {

namespace detail {
std::atomic<std::uint64_t> sigbus_repairs{0};
}

namespace {

// Every field is a lock-free atomic: the handler may read a slot while its owner writes it
// (on another thread), and only lock-free atomics may be shared with a signal handler.
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free);
static_assert(std::atomic<std::size_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<bool>::is_always_lock_free);

// One registered mapping. start and length are published under a sequence count (a
// seqlock): the writer makes seq odd, changes them, makes it even again; the handler takes
// the pair only when it read the same even seq before and after it. A slot is claimed by
// one owner at a time (claimed), so there is only ever one writer per slot.
struct Slot {
  std::atomic<bool> claimed{false};
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uintptr_t> start{0};
  std::atomic<std::size_t> length{0};  // 0: nothing registered
  std::atomic<bool> lost{false};       // set by the handler, read and cleared by the owner
};
Slot g_slots[kMaxGuardedMappings];

// The disposition SIGBUS had before the guard: written once by install_sigbus_guard(),
// before the handler is installed (sigaction is a system call: the kernel orders the
// two), and only read afterwards.
struct sigaction g_previous {};

// The owner's side of the seqlock: only the slot's claimant calls it.
void publish(Slot& s, std::uintptr_t start, std::size_t length) noexcept {
  const std::uint32_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);  // odd: the pair is changing
  // Pairs with the handler's acquire fence before its second seq load: a handler that
  // reads either new field below also reads this odd (or a later) seq, and drops the pair.
  std::atomic_thread_fence(std::memory_order_release);
  s.start.store(start, std::memory_order_relaxed);
  s.length.store(length, std::memory_order_relaxed);
  // Pairs with the handler's first seq load (acquire): a handler that reads this even seq
  // reads the pair stored above.
  s.seq.store(seq + 2, std::memory_order_release);
}

// What the handler sees of a slot: the registered range, or nothing (empty, or being
// changed: a fault inside a mapping can only come from its owner's accesses, which happen
// while its range is published, not while the owner itself rewrites it).
struct Range {
  std::uintptr_t start;
  std::size_t length;
};
std::optional<Range> read_slot(const Slot& s) noexcept {
  const std::uint32_t before = s.seq.load(std::memory_order_acquire);  // pairs with publish()'s final store
  if ((before & 1u) != 0) return std::nullopt;
  const Range r{s.start.load(std::memory_order_relaxed), s.length.load(std::memory_order_relaxed)};
  std::atomic_thread_fence(std::memory_order_acquire);  // pairs with publish()'s release fence
  if (s.seq.load(std::memory_order_relaxed) != before || r.length == 0) return std::nullopt;
  return r;
}

// Gives a SIGBUS that is not ours the action SIGBUS had before the guard. A handler
// (a sanitizer's) is called as the kernel would have. Otherwise (the default: end the
// process with a core) that disposition is restored; a fault raised by an access comes
// back when the access is retried on return, and meets it there, at the faulting
// instruction; a signal that is not one (sent by kill or sigqueue, or a memory error the
// kernel reports in advance, BUS_MCEERR_AO) is raised again, to be delivered on return.
// Uses sigaction and tgkill (through raise), both on the endpoint's system call list.
void pass_on(int sig, siginfo_t* info, void* context) noexcept {
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    if ((g_previous.sa_flags & SA_SIGINFO) != 0) g_previous.sa_sigaction(sig, info, context);
    else g_previous.sa_handler(sig);
    return;
  }
  ::sigaction(SIGBUS, &g_previous, nullptr);
  if (info->si_code <= 0 || info->si_code == BUS_MCEERR_AO) ::raise(SIGBUS);
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  // si_code > 0: the kernel raised it for an access at si_addr (the truncated file's case
  // is BUS_ADRERR; a hugetlbfs page that cannot be supplied, or poisoned memory, are
  // other codes with the same remedy). A signal someone sent has no meaningful address.
  if (info->si_code > 0) {
    const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (Slot& s : g_slots) {
      const auto r = read_slot(s);
      if (!r || addr - r->start >= r->length) continue;
      // The whole mapping, so that a hugetlbfs mapping is replaced on its own huge-page
      // boundaries (a part of one cannot be). MAP_NORESERVE: the replacement only takes
      // memory where it is written before the owner unmaps it.
      // The registered address back as a pointer: it is where the mapping lies, and only
      // mmap (MAP_FIXED) uses it, never a dereference the optimizer could track.
      void* p = ::mmap(reinterpret_cast<void*>(r->start), r->length, PROT_READ | PROT_WRITE,  // NOLINT(performance-no-int-to-ptr)
                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) break;  // cannot repair it: the fault is fatal after all
      s.lost.store(true, std::memory_order_relaxed);
      // Release: an owner that sees this count (and fences, see sigbus_repairs()) sees lost.
      detail::sigbus_repairs.fetch_add(1, std::memory_order_release);
      errno = saved_errno;
      return;  // the access is retried on the replacement
    }
  }
  pass_on(sig, info, context);
  errno = saved_errno;
}

}  // namespace

sys::Status<std::string> install_sigbus_guard() {
  static std::mutex m;
  static bool installed = false;
  const std::lock_guard lock(m);
  if (installed) return {};
  if (::sigaction(SIGBUS, nullptr, &g_previous) != 0)
    return sys::Unexpected("sigaction(SIGBUS): " + std::string(std::strerror(errno)));
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGBUS, &sa, nullptr) != 0)
    return sys::Unexpected("sigaction(SIGBUS): " + std::string(std::strerror(errno)));
  // A SIGBUS that is blocked when an access raises it ends the process at once, without
  // the handler.
  sigset_t bus;
  sigemptyset(&bus);
  sigaddset(&bus, SIGBUS);
  if (::sigprocmask(SIG_UNBLOCK, &bus, nullptr) != 0)
    return sys::Unexpected("sigprocmask: " + std::string(std::strerror(errno)));
  installed = true;
  return {};
}

std::optional<std::uint32_t> guard_mapping(void* start, std::size_t length) noexcept {
  for (std::uint32_t i = 0; i < kMaxGuardedMappings; ++i) {
    bool free = false;
    if (!g_slots[i].claimed.compare_exchange_strong(free, true, std::memory_order_acquire)) continue;
    g_slots[i].lost.store(false, std::memory_order_relaxed);
    publish(g_slots[i], reinterpret_cast<std::uintptr_t>(start), length);
    return i;
  }
  return std::nullopt;
}

void unguard_mapping(std::uint32_t slot) noexcept {
  Slot& s = g_slots[slot];
  publish(s, 0, 0);  // from here on a fault in the range is not ours (it is unmapped next)
  s.lost.store(false, std::memory_order_relaxed);
  s.claimed.store(false, std::memory_order_release);  // pairs with the next claimant's acquire CAS
}

bool mapping_lost(std::uint32_t slot) noexcept { return g_slots[slot].lost.load(std::memory_order_relaxed); }

}  // namespace vswitch::endpoints::vhost_user
