#include "shm/sys/eventfd.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace vswitch::sys {

Result<EventFd, SysError> EventFd::create() {
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return Unexpected{SysError{"eventfd", errno}};
  return EventFd(Fd(fd));
}

void EventFd::signal() const noexcept {
  const std::uint64_t one = 1;
  // EAGAIN would mean the counter is at its maximum: a wakeup is pending anyway.
  while (::write(fd_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

std::uint64_t EventFd::drain() const noexcept {
  std::uint64_t value = 0;  // a counter at zero: read() fails with EAGAIN, and 0 is returned
  ssize_t n;
  do {
    n = ::read(fd_.get(), &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  return n == sizeof value ? value : 0;
}

Result<std::uint64_t, SysError> drain_counter(int fd) noexcept {
  std::uint64_t value = 0;
  ssize_t n;
  do {
    n = ::read(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof value) return value;
  if (n < 0 && errno == EAGAIN) return std::uint64_t{0};
  if (n < 0) return Unexpected{SysError{"read", errno}};
  return Unexpected{SysError{"read", EIO}};  // a short read: not an eventfd counter
}

Status<SysError> signal_counter(int fd) noexcept {
  const std::uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(fd, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof one || (n < 0 && errno == EAGAIN)) return {};
  if (n < 0) return Unexpected{SysError{"write", errno}};
  return Unexpected{SysError{"write", EIO}};
}

bool EventFd::wait(std::chrono::nanoseconds timeout) const noexcept {
  pollfd p{fd_.get(), POLLIN, 0};
  timespec ts{};
  timespec* tsp = nullptr;  // a negative timeout waits forever
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  int n;
  do {
    n = ::ppoll(&p, 1, tsp, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  return drain() != 0;
}

}  // namespace vswitch::sys
