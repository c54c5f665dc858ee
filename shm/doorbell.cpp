#include "shm/doorbell.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>

namespace vswitch::shm {

sys::Result<EventFdDoorbell, sys::SysError> EventFdDoorbell::create() {
  auto fd = sys::EventFd::create();
  if (!fd) return sys::Unexpected{fd.error()};
  return EventFdDoorbell(std::move(fd).value());
}

bool EventFdDoorbell::wait(std::chrono::nanoseconds timeout) noexcept {
  ++waits_;
  return fd_.wait(timeout);
}

sys::Result<PipeDoorbell, sys::SysError> PipeDoorbell::create() {
  std::array<int, 2> fds{-1, -1};
  if (::pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK) != 0) return sys::Unexpected{sys::SysError{"pipe2", errno}};
  sys::Fd r(fds[0]);
  sys::Fd w(fds[1]);
  // One page: a ring needs one byte, and one read of a page empties it. A refusal (a
  // pipe-user-pages limit) leaves the default size, which works the same.
  (void)::fcntl(w.get(), F_SETPIPE_SZ, 4096);
  return PipeDoorbell(std::move(r), std::move(w));
}

void PipeDoorbell::ring() noexcept {
  if (!write_.valid()) return;
  rings_.fetch_add(1, std::memory_order_relaxed);  // statistics only
  const char one = 1;
  // EAGAIN: the pipe is full, a wakeup is pending anyway. EPIPE (and SIGPIPE) would take
  // every read end closed: vswitchd holds every doorbell's read end for as long as it
  // runs, so an owner that exits or is restarted leaves its ringers a reader.
  while (::write(write_.get(), &one, 1) < 0 && errno == EINTR) {
  }
}

sys::Result<bool, sys::SysError> drain_doorbell(int fd) noexcept {
  std::array<char, 4096> buf;  // NOLINT(cppcoreguidelines-pro-type-member-init): read() fills it
  ssize_t n;
  do {
    n = ::read(fd, buf.data(), buf.size());
  } while (n < 0 && errno == EINTR);
  if (n > 0) return true;
  if (n < 0 && errno == EAGAIN) return false;
  if (n < 0) return sys::Unexpected{sys::SysError{"read", errno}};
  return sys::Unexpected{sys::SysError{"read (end of file: no writer left)", EPIPE}};
}

}  // namespace vswitch::shm

namespace vswitch::shm {

void FutexDoorbell::ring() noexcept {
  // Every waiter (there is one reader); an error (none is expected for a mapped, aligned
  // word) can only mean no wake-up, which the reader's timeout bounds.
  (void)::syscall(SYS_futex, word_, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void FutexDoorbell::wait(std::uint32_t* word, std::chrono::milliseconds timeout) noexcept {
  const auto ms = timeout.count() < 0 ? 0 : timeout.count();
  timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
  // EAGAIN (the word is no longer 1), EINTR and ETIMEDOUT all mean: look at the ring.
  (void)::syscall(SYS_futex, word, FUTEX_WAIT, 1u, &ts, nullptr, 0);
}

}  // namespace vswitch::shm
