// EventFd: a Linux eventfd used as a doorbell. The descriptor is non-blocking: every
// process that rings a doorbell shares the counter with its owner, and eventfd(2) says a
// write() that would overflow the counter "blocks until a read is performed" on a
// blocking descriptor. An owner that stops reading (hung, or hostile: it can write
// 0xfffffffffffffffe into its own counter) would then freeze every process that rings it.
// Non-blocking, that write fails with EAGAIN, which is a wakeup already pending. The
// owner sleeps in poll or epoll and reads only after they report the counter readable.
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

  // Adds one to the counter, waking a poller. Never blocks: a counter at its maximum
  // (2^64-2) already has a wakeup pending, and the add is skipped.
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
