// Doorbell: how one side wakes the other. The ring only ever calls ring(); who sleeps on
// it and how is the owner's business. Between endpoint processes it is a pipe
// (PipeDoorbell: the ringers hold only its write end); within one process, and in tests, an
// eventfd (EventFdDoorbell); on a hypervisor an IPI or an ivshmem doorbell register
// implements the same interface.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "shm/sys/eventfd.hpp"

namespace vswitch::shm {

class Doorbell {
 public:
  virtual ~Doorbell() = default;
  // Wakes the owner. Must be callable from any thread or process that holds the doorbell,
  // must never block, and may coalesce: several rings before a wait are one wakeup.
  virtual void ring() noexcept = 0;
};

class EventFdDoorbell final : public Doorbell {
 public:
  explicit EventFdDoorbell(sys::EventFd fd) : fd_(std::move(fd)) {}
  EventFdDoorbell(EventFdDoorbell&& o) noexcept
      : fd_(std::move(o.fd_)), rings_(o.rings_.load(std::memory_order_relaxed)), waits_(o.waits_) {}
  EventFdDoorbell& operator=(EventFdDoorbell&&) = delete;
  [[nodiscard]] static sys::Result<EventFdDoorbell, sys::SysError> create();

  void ring() noexcept override {
    rings_.fetch_add(1, std::memory_order_relaxed);  // statistics only
    fd_.signal();
  }
  // Blocks until rung (or the timeout passes); counts the sleeps that actually blocked.
  bool wait(std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1)) noexcept;

  [[nodiscard]] int fd() const noexcept { return fd_.fd(); }
  [[nodiscard]] std::uint64_t rings() const noexcept { return rings_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t waits() const noexcept { return waits_; }

 private:
  sys::EventFd fd_;
  std::atomic<std::uint64_t> rings_{0};
  std::uint64_t waits_ = 0;  // only the owner waits
};

// A doorbell its ringers cannot drain. An eventfd is one open file, readable and writable
// by every process that holds it: a compromised endpoint holding a peer's eventfd could
// read it empty, eating the wake-up a third endpoint had just rung (that peer then sleeps
// on data until its next timeout). A pipe has two ends, and a write end cannot be read
// (read(2) fails with EBADF): the owner keeps the read end, every ringer gets only the
// write end. Both ends are non-blocking. A ring writes one byte; a full pipe (EAGAIN)
// already has a wakeup pending, so a ring never blocks and rings coalesce, as with the
// eventfd. The pipe is one page (F_SETPIPE_SZ), which one read drains.
class PipeDoorbell final : public Doorbell {
 public:
  PipeDoorbell(PipeDoorbell&& o) noexcept
      : read_(std::move(o.read_)), write_(std::move(o.write_)), rings_(o.rings_.load(std::memory_order_relaxed)) {}
  PipeDoorbell& operator=(PipeDoorbell&&) = delete;
  [[nodiscard]] static sys::Result<PipeDoorbell, sys::SysError> create();
  // The ends a process was handed (either may be empty).
  [[nodiscard]] static PipeDoorbell adopt(sys::Fd read_end, sys::Fd write_end) {
    return PipeDoorbell(std::move(read_end), std::move(write_end));
  }

  // Without the write end (closed in a process that must not ring it) a ring does nothing.
  void ring() noexcept override;

  [[nodiscard]] int read_fd() const noexcept { return read_.get(); }
  [[nodiscard]] int write_fd() const noexcept { return write_.get(); }
  // A process keeps the read end of its own doorbell and the write ends of its peers'.
  void close_read_end() noexcept { read_.reset(); }
  void close_write_end() noexcept { write_.reset(); }
  [[nodiscard]] std::uint64_t rings() const noexcept { return rings_.load(std::memory_order_relaxed); }

 private:
  PipeDoorbell(sys::Fd r, sys::Fd w) : read_(std::move(r)), write_(std::move(w)) {}
  sys::Fd read_;
  sys::Fd write_;
  std::atomic<std::uint64_t> rings_{0};
};

// A doorbell that is the ring's own wake-request word (RingArea::consumer_waiting_word),
// slept on with futex(2): for a consumer no descriptor can be handed to (vswitchctl's
// capture reader; the endpoint producing into its ring was started long before). The word
// lies in shared memory, so the futex is a shared one (no FUTEX_PRIVATE_FLAG), keyed by
// the object and offset, not by the address each process maps it at.
//
// No wake-up is lost: the producer clears the word (its exchange(0) after [F1]) before it
// calls ring(), and wait() sleeps only while the word still holds 1, a comparison the
// kernel makes under the futex's lock: a clear before the wait makes the wait return at
// once (EAGAIN), a clear after it is followed by this FUTEX_WAKE, which finds the waiter
// queued.
class FutexDoorbell final : public Doorbell {
 public:
  explicit FutexDoorbell(std::uint32_t* word) noexcept : word_(word) {}
  void ring() noexcept override;
  // Sleeps while *word == 1 (the consumer armed and nobody has taken the request), at most
  // `timeout`; returns at once when the word holds anything else.
  static void wait(std::uint32_t* word, std::chrono::milliseconds timeout) noexcept;

 private:
  std::uint32_t* word_;
};

// The owner's side of either doorbell, after epoll said its descriptor is readable: one
// read() of up to a page, which clears an eventfd's counter or empties a one-page pipe.
// Returns whether anything was read (EAGAIN: already drained, false); fails on any other
// error, or on a descriptor at end of file (a pipe whose every write end is closed would
// be readable forever).
[[nodiscard]] sys::Result<bool, sys::SysError> drain_doorbell(int fd) noexcept;

}  // namespace vswitch::shm
