// Doorbell: how one side wakes the other. The ring only ever calls ring(); who sleeps on
// it and how is the owner's business. On Linux it is an eventfd (EventFdDoorbell); on a
// hypervisor without eventfd an IPI or an ivshmem doorbell register implements the same
// interface.
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

}  // namespace vswitch::shm
