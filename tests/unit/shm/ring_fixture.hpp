// An in-process ring over heap memory (64-byte aligned), for tests that need no shm name.
#pragma once

#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "shm/frame_ring.hpp"

namespace vswitch::shm::testing {

struct AlignedFree {
  void operator()(std::byte* p) const noexcept { std::free(p); }
};

class HeapRing {
 public:
  HeapRing(std::uint64_t capacity, std::uint32_t max_payload)
      : bytes_(RingArea::bytes_for(capacity)),
        mem_(static_cast<std::byte*>(std::aligned_alloc(64, (bytes_ + 63) & ~std::size_t{63}))) {
    auto a = RingArea::init(span(), capacity, max_payload);
    if (!a) std::abort();
    area_ = a.value();
  }
  std::span<std::byte> span() const { return {mem_.get(), bytes_}; }
  RingArea area() const { return *area_; }
  std::byte* data() const { return mem_.get() + kRingDataOffset; }
  // Raw access to the control words, for corruption tests.
  std::uint64_t& head_word() const { return *reinterpret_cast<std::uint64_t*>(mem_.get() + kRingHeadOffset); }
  std::uint64_t& tail_word() const { return *reinterpret_cast<std::uint64_t*>(mem_.get() + kRingTailOffset); }
  std::uint32_t& consumer_waiting_word() const { return *reinterpret_cast<std::uint32_t*>(mem_.get() + kRingConsumerWaitingOffset); }
  std::uint64_t& producer_wants_word() const { return *reinterpret_cast<std::uint64_t*>(mem_.get() + kRingProducerWantsOffset); }

 private:
  std::size_t bytes_;
  std::unique_ptr<std::byte, AlignedFree> mem_;
  std::optional<RingArea> area_;
};

// A doorbell that only counts.
class CountingDoorbell final : public Doorbell {
 public:
  void ring() noexcept override { ++rings; }
  int rings = 0;
};

inline std::vector<std::byte> bytes_of(std::size_t n, unsigned char fill) {
  return std::vector<std::byte>(n, static_cast<std::byte>(fill));
}

}  // namespace vswitch::shm::testing
