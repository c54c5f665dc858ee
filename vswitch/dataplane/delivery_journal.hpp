// DeliveryJournal: what an endpoint had handed to its guest when it was killed, so that
// its successor delivers every record of its channels exactly once.
//
// The commit point of a delivery into a vhost-user guest is the guest's used index: once
// it shows a chain, the guest has the frame; before, the frame does not exist for it, and
// a front-end that reconnects (QEMU, reconnect=N) restarts the receive queue at that
// index. The commit point of taking a record from a channel is the channel's released
// tail. The two cannot be one store, so an endpoint whose frontend journals its
// deliveries (Frontend::journals_deliveries) does, each time it commits:
//   1. write(): the used index it is about to publish (the mark) and each channel's
//      consumed tail;
//   2. the frontend publishes the used index;
//   3. the channels' tails are released.
// A kill between any two steps leaves, for the successor, once its guest's receive queue
// runs again at used index U (Frontend::take_delivery_restart), one of:
//   - 1 torn (or never done): read() returns the other slot, the previous commit's, whose
//     tails were released already: nothing to do;
//   - 1 done, 2 not: U is the old index, not the mark (a commit that delivered anything
//     moved it): the records are delivered again, into the chains the guest never saw;
//   - 2 done, 3 not (or not for every channel): U == the mark: the successor skips each
//     channel to its journaled tail (FrameConsumer::skip_to);
//   - 3 done: U == the mark, the tails are there already: nothing moves.
// A commit that took records without delivering any (all dropped, counted) journals an
// unchanged index: a kill before step 3 finds U == the mark and skips those records,
// which is what the predecessor did with them.
//
// Ordering. The successor reads after the writer has died (the writer's exit, vswitchd's
// waitpid and fork order all of the writer's stores before the reads), so only the order
// of the writer's own stores matters, for a kill at any instruction: the release fence
// after the odd sequence word orders it before the slot's contents, the even sequence
// word is a release store after them, and the stores of steps 2 ([VR], a release store)
// and 3 ([R2], release) keep the whole journal before them.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>

#include "vswitch/config/port.hpp"
#include "vswitch/observability/endpoint_counters.hpp"
#include "vswitch/observability/stats.hpp"

namespace vswitch {

struct DeliveryMark {
  std::optional<std::uint16_t> used;  // the guest's receive used index as published; none: no queue ran
  std::array<std::uint64_t, kMaxEndpoints> tails{};  // by peer port: the channel consumed up to here
};

class DeliveryJournal {
 public:
  static constexpr std::size_t kSlotWords = 2 + kMaxEndpoints;  // sequence, mark, tails
  static_assert(2 * kSlotWords == kDeliveryJournalWords);

  explicit DeliveryJournal(std::span<std::uint64_t, kDeliveryJournalWords> words) noexcept : words_(words) {
    for (std::size_t slot = 0; slot < 2; ++slot) {
      const std::uint64_t seq = load(slot * kSlotWords);
      if (valid(seq) && seq > seq_) seq_ = seq;
    }
  }

  // Step 1: begin(mark), tail() for each channel, end().
  void begin(std::optional<std::uint16_t> used) noexcept {
    slot_ = ((seq_ + 2) / 2 % 2) * kSlotWords;
    store(slot_, seq_ + 1, std::memory_order_relaxed);  // odd: being written
    // Orders the odd sequence word before the contents below: a slot killed midway is
    // never taken for a complete one.
    std::atomic_thread_fence(std::memory_order_release);
    store(slot_ + 1, used ? (kHasUsed | *used) : 0, std::memory_order_relaxed);
  }
  void tail(PortId port, std::uint64_t consumed_to) noexcept {
    if (port < kMaxEndpoints) store(slot_ + 2 + port, consumed_to, std::memory_order_relaxed);
  }
  void end() noexcept {
    seq_ += 2;
    store(slot_, seq_, std::memory_order_release);  // even: complete, after its contents
  }

  // The last complete commit, if any was ever written.
  [[nodiscard]] std::optional<DeliveryMark> read() const noexcept {
    std::optional<DeliveryMark> m;
    std::uint64_t best = 0;
    for (std::size_t slot = 0; slot < 2; ++slot) {
      const std::size_t at = slot * kSlotWords;
      const std::uint64_t seq = load(at);
      if (!valid(seq) || seq <= best) continue;
      best = seq;
      m.emplace();
      const std::uint64_t mark = load(at + 1);
      if ((mark & kHasUsed) != 0) m->used = static_cast<std::uint16_t>(mark);
      for (std::size_t p = 0; p < kMaxEndpoints; ++p) m->tails[p] = load(at + 2 + p);
    }
    return m;
  }

 private:
  static constexpr std::uint64_t kHasUsed = std::uint64_t{1} << 16;
  // Complete (even, not 0) and below 2^62: no endpoint commits that often, and a slot a
  // broken predecessor left near 2^64 would otherwise outrank every commit after it
  // (the next sequence wrapping to 0).
  static constexpr bool valid(std::uint64_t seq) noexcept {
    return seq != 0 && seq % 2 == 0 && seq < (std::uint64_t{1} << 62);
  }
  [[nodiscard]] std::uint64_t load(std::size_t i) const noexcept {
    return std::atomic_ref<std::uint64_t>(words_[i]).load(std::memory_order_relaxed);
  }
  void store(std::size_t i, std::uint64_t v, std::memory_order o) noexcept {
    std::atomic_ref<std::uint64_t>(words_[i]).store(v, o);
  }

  std::span<std::uint64_t, kDeliveryJournalWords> words_;
  std::uint64_t seq_ = 0;  // the last complete slot's sequence (even)
  std::size_t slot_ = 0;   // the slot being written
};

}  // namespace vswitch
