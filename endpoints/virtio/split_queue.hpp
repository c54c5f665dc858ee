// SplitQueue: the device side of one split virtqueue (virtio 1.x, 2.7) in guest memory.
//
// Everything in guest memory is untrusted and read once: each 16-byte descriptor is copied
// into a local before any field is looked at; avail->idx is checked against how far it may
// run ahead; every head taken is handed to the caller exactly once, as a chain or as a bad
// chain (which the caller returns with used length 0: add_used(head, 0)), so no descriptor
// is ever leaked. A chain is refused (ChainError, counted) when:
//   the head or a next index is >= the queue size (or >= the indirect table's entries);
//   it has more descriptors than the queue size / the table's entries (a loop);
//   an indirect descriptor also has NEXT, sits inside an indirect table, has a length
//   that is 0 or not a multiple of 16, more entries than the queue size, or is unmapped;
//   a buffer does not lie wholly inside one guest memory region;
//   a device-readable buffer follows a device-writable one;
//   its bytes add up to more than 2^32.
// An avail index more than the queue size ahead, or more chains in flight than the queue
// size, breaks the queue (kBroken: counted, nothing more is popped until reset()) without
// affecting any other queue or VM.
//
// Ordering (labels used at the lines that implement them):
//   [VA] avail->idx load-acquire before reading ring entries and descriptors (pairs with
//        the driver's write barrier before its avail->idx store);
//   [VR] used->idx store-release after the used elements and every byte written into the
//        buffers (pairs with the driver's read barrier after loading used->idx);
//   [VF1] full fence after [VR], before reading used_event / avail->flags: the driver
//        writes used_event, fences, re-reads used->idx; without ours both sides can read
//        the other's old value and the guest waits for an interrupt nobody sends;
//   [VF2] full fence after publishing avail_event (or clearing NO_NOTIFY), before
//        re-reading avail->idx: the driver publishes avail->idx, fences, reads avail_event;
//        without it a chain added just then is neither seen nor kicked (lost kick).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "endpoints/virtio/guest_memory.hpp"
#include "endpoints/virtio/net_header.hpp"  // the little-endian host assertion
#include "shm/sys/result.hpp"

namespace vswitch::endpoints::virtio {

inline constexpr std::uint16_t kDescFlagNext = 1;
inline constexpr std::uint16_t kDescFlagWrite = 2;
inline constexpr std::uint16_t kDescFlagIndirect = 4;
inline constexpr std::uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr std::uint16_t kUsedFlagNoNotify = 1;
inline constexpr std::uint16_t kMaxQueueSize = 32768;

// Bit-for-bit one descriptor of the table (little-endian: read natively, see net_header.hpp).
struct Descriptor {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint16_t flags;
  std::uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

struct QueueLayout {
  std::uint16_t size = 0;      // a power of two, 1..32768
  std::uint64_t desc_gpa = 0;  // 16-byte aligned, 16 * size bytes
  std::uint64_t avail_gpa = 0; // 2-byte aligned, 6 + 2 * size bytes
  std::uint64_t used_gpa = 0;  // 4-byte aligned, 6 + 8 * size bytes
  bool event_idx = false;      // VIRTIO_F_EVENT_IDX negotiated
};

enum class ChainError : std::uint8_t {
  kHeadOutOfRange,
  kNextOutOfRange,
  kTooLong,              // more descriptors than allowed: a loop or an oversized chain
  kIndirectWithNext,
  kIndirectNested,
  kIndirectBadLength,    // 0 or not a multiple of 16
  kIndirectTooLarge,     // more entries than the queue size
  kIndirectUnmapped,
  kBufferUnmapped,       // not wholly inside one region
  kReadableAfterWritable,
  kTooManyBytes,         // more than 2^32 in total
  kCount,
};
std::string_view to_string(ChainError e);

enum class QueueError : std::uint8_t {
  kAvailIndexJump,   // avail->idx more than the queue size ahead of what was consumed
  kTooManyInFlight,  // more chains popped and not returned than the queue size
  kCount,
};
std::string_view to_string(QueueError e);

// One guest buffer of a chain, in host memory (valid until its head is returned).
struct GuestBuffer {
  std::span<std::byte> bytes;
  bool device_writable;
};

struct Chain {
  std::uint16_t head = 0;
  std::vector<GuestBuffer> buffers;  // readable ones first, then writable ones
  std::uint64_t readable_bytes = 0;
  std::uint64_t writable_bytes = 0;
};

enum class Pop : std::uint8_t {
  kChain,     // `chain` holds a valid chain
  kEmpty,     // nothing available
  kBadChain,  // chain.head is valid and must be returned with add_used(head, 0); error says why
  kBroken,    // the queue is unusable until reset(); queue_error says why
};

struct PopResult {
  Pop status;
  ChainError error = ChainError::kCount;
  QueueError queue_error = QueueError::kCount;
};

struct QueueCounters {
  std::uint64_t chains = 0;
  std::uint64_t used = 0;
  std::uint64_t notifications = 0;  // needs_notification() said yes
  std::uint64_t suppressed = 0;     // ... and no
  std::array<std::uint64_t, static_cast<std::size_t>(ChainError::kCount)> chain_errors{};
  std::array<std::uint64_t, static_cast<std::size_t>(QueueError::kCount)> queue_errors{};
};

class SplitQueue {
 public:
  // Validates the layout against guest memory (size, alignment, every ring wholly mapped).
  [[nodiscard]] static sys::Result<SplitQueue, std::string> create(const GuestMemory& memory,
                                                                   const QueueLayout& layout,
                                                                   std::uint16_t next_avail = 0,
                                                                   std::uint16_t next_used = 0);

  // The next available chain. `chain` is overwritten (its vector keeps its capacity).
  PopResult pop(Chain& chain);
  // Stages a used element (one per head taken, exactly once). Visible after publish_used().
  void add_used(std::uint16_t head, std::uint32_t len);
  // Makes every staged element visible with one used->idx store [VR].
  void publish_used();
  // After publish_used(): whether the driver wants an interrupt now (EVENT_IDX or flags),
  // decided after the fence [VF1].
  bool needs_notification();
  // Before sleeping on the kick eventfd: asks for kicks again and re-checks [VF2]. Returns
  // true when chains are already available (do not sleep: pop them).
  bool enable_notification();
  // While busy: asks the driver not to kick (flag mode; with EVENT_IDX the stale
  // avail_event does the same).
  void disable_notification();
  // Forgets the broken state and restarts at the given indices (device reset, reconnect).
  void reset(std::uint16_t next_avail, std::uint16_t next_used);

  [[nodiscard]] std::uint16_t size() const noexcept { return layout_.size; }
  [[nodiscard]] std::uint16_t next_avail() const noexcept { return next_avail_; }
  [[nodiscard]] std::uint16_t next_used() const noexcept { return next_used_; }
  [[nodiscard]] bool broken() const noexcept { return broken_; }
  [[nodiscard]] const QueueCounters& counters() const noexcept { return counters_; }

 private:
  SplitQueue(const GuestMemory& memory, const QueueLayout& layout, std::span<std::byte> desc,
             std::span<std::byte> avail, std::span<std::byte> used);
  PopResult bad(Chain& chain, ChainError e);
  std::uint16_t load_avail_idx() const noexcept;

  const GuestMemory* memory_;
  QueueLayout layout_;
  std::span<std::byte> desc_;   // the descriptor table
  std::span<std::byte> avail_;  // flags, idx, ring[size], used_event
  std::span<std::byte> used_;   // flags, idx, ring[size], avail_event
  std::uint16_t next_avail_ = 0;
  std::uint16_t next_used_ = 0;     // local used index (published by publish_used)
  std::uint16_t published_used_ = 0;
  std::uint16_t signalled_used_ = 0;  // used->idx at the last notification decision
  bool signalled_used_valid_ = false;
  std::uint16_t cached_avail_idx_ = 0;
  std::uint32_t in_flight_ = 0;
  bool broken_ = false;
  QueueCounters counters_;
};

}  // namespace vswitch::endpoints::virtio
