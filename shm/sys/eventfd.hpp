// EventFd: a Linux eventfd used as a doorbell. The descriptor is blocking: an untimed
// wait() is then a single read() that sleeps until the counter is non-zero and clears it
// (one syscall per sleep, not poll + read). It can still sit in an epoll set: only its
// owner reads it, and only after epoll reported it readable.
#pragma once

#include <chrono>
#include <cstdint>

#include "shm/sys/error.hpp"
#include "shm/sys/fd.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::sys {

class EventFd {
 public:
  [[nodiscard]] static Result<EventFd, SysError> create();

  // Adds one to the counter, waking a poller. Never blocks (the counter saturates only
  // after 2^64-2 signals without a read).
  void signal() const noexcept;
  // Reads and clears the counter without blocking; returns 0 when it was already zero.
  std::uint64_t drain() const noexcept;
  // Blocks until the counter is non-zero (or the timeout passes), then drains it.
  // Returns true when it was signalled. A negative timeout waits forever.
  bool wait(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1)) const noexcept;

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }

 private:
  explicit EventFd(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

// The same on a bare descriptor (a doorbell handed over as an int, a guest's kick or
// call eventfd from its VMM), with every failure returned:
// Reads and clears the counter after epoll said it is readable. EAGAIN (nothing to read:
// a non-blocking descriptor already drained) is the value 0, not an error.
[[nodiscard]] Result<std::uint64_t, SysError> drain_counter(int fd) noexcept;
// Adds one. EAGAIN (a non-blocking counter at its maximum: a wakeup is pending anyway)
// is success; any other failure is returned.
[[nodiscard]] Status<SysError> signal_counter(int fd) noexcept;

}  // namespace vswitch::sys
