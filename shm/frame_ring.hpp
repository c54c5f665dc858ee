// FrameRing: a single-producer single-consumer ring of variable-length records in shared
// memory, with the sleep handshake for both directions built into its API.
//
// Layout of a ring area (all offsets from its 64-byte-aligned start):
//
//   0    RingHeader         immutable after creation (capacity, max payload)
//   64   head               written by the producer only (free-running byte index)
//   128  tail               written by the consumer only (free-running byte index)
//   192  consumer_waiting   set by the consumer before it sleeps, cleared by either side
//   256  producer_wants     bytes the producer waits for, set by it before it sleeps
//   320  data[capacity]     records
//
// A record is an 8-byte RecordHeader {length, kind} followed by `length` payload bytes,
// padded to 8 bytes. A record never wraps: when one does not fit before the end, the
// producer writes a pad record that fills the rest, and the record starts at offset 0.
// Indices are 64-bit and free-running (no wrap in practice); position = index % capacity.
//
// Ordering (labels are used at the lines that implement them):
//   [R1] producer: record bytes, then head.store(release)   -> [A1] consumer head.load(acquire)
//   [R2] consumer: copy-out done, then tail.store(release)  -> [A2] producer tail.load(acquire)
//   [F1] producer after [R1], before reading consumer_waiting  <-> [F2] consumer after
//        setting consumer_waiting, before re-reading head (data-available handshake)
//   [F3] producer after setting producer_wants, before re-reading tail  <-> [F4] consumer
//        after [R2], before reading producer_wants (space-available, free-send handshake)
// Without either fence of a pair, both sides can read the other's old value: the waiter
// sleeps with work pending and nobody rings (shared/references/sel4-vswitch-*.txt).
//
// Everything in the area is untrusted: the consumer validates head and every record
// header it reads (once, into a local), the producer validates tail. A corrupt ring is
// counted, resynchronised and the caller keeps running; nothing is read or written
// outside the data area.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "shm/doorbell.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::shm {

inline constexpr std::uint32_t kRecordHeaderBytes = 8;
inline constexpr std::uint32_t kVirtioNetHeaderBytes = 12;
inline constexpr std::uint32_t kMaxFrameBytes = 65536;
// The largest payload a channel carries by default: one 64 KiB GSO frame plus its
// virtio-net header.
inline constexpr std::uint32_t kDefaultMaxPayload = kMaxFrameBytes + kVirtioNetHeaderBytes;

constexpr std::uint64_t align8(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t{7}; }
constexpr std::uint64_t record_bytes(std::uint64_t payload) noexcept {
  return align8(kRecordHeaderBytes + payload);
}

struct RingHeader {
  std::uint64_t capacity;     // data bytes; a power of two, >= record_bytes(max_payload)
  std::uint32_t max_payload;  // largest record payload
  std::uint32_t data_offset;  // kRingDataOffset
  std::uint64_t reserved[6];
};
static_assert(sizeof(RingHeader) == 64);

inline constexpr std::uint32_t kRingDataOffset = 320;
inline constexpr std::uint64_t kMinRingCapacity = 64;
inline constexpr std::uint64_t kMaxRingCapacity = std::uint64_t{1} << 36;
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "ring indices must be lock-free to be address-free across processes");
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

enum class RingError : std::uint8_t {
  // consumer side: what it found in the ring
  kHeadOutOfRange,      // head - tail > capacity (head behind tail or too far ahead)
  kHeadMisaligned,      // head not a multiple of 8
  kRecordKindInvalid,   // record header kind is neither data nor pad
  kRecordTooLarge,      // length > max_payload
  kRecordCrossesEnd,    // record would run past the end of the data area
  kRecordBeyondHead,    // record extends past the published head
  kPadLengthInvalid,    // pad record does not end exactly at the end of the data area
  // producer side
  kTailOutOfRange,      // head - tail > capacity, or tail misaligned
  kCount,
};
std::string_view to_string(RingError e);

enum class RingAttachError : std::uint8_t {
  kAreaTooSmall,
  kMisaligned,
  kCapacityNotPowerOfTwo,
  kCapacityOutOfRange,
  kMaxPayloadTooLarge,
  kBadDataOffset,
  kAreaSizeMismatch,
  kReservedNotZero,
};
std::string_view to_string(RingAttachError e);

// Per-side counters, kept in the process that owns the side (not in shared memory).
struct RingCounters {
  std::uint64_t records = 0;       // records committed (producer) or consumed (consumer)
  std::uint64_t bytes = 0;         // payload bytes
  std::uint64_t batches = 0;       // index stores ([R1] or [R2])
  std::uint64_t wakes_sent = 0;    // doorbells rung for the other side
  std::uint64_t arms = 0;          // times this side armed its wake request
  std::uint64_t resyncs = 0;       // corruption recoveries
  std::array<std::uint64_t, static_cast<std::size_t>(RingError::kCount)> errors{};
};

// A validated view of a ring area. Only init() and attach() can build one.
class RingArea {
 public:
  [[nodiscard]] static constexpr std::uint64_t bytes_for(std::uint64_t capacity) noexcept {
    return kRingDataOffset + capacity;
  }
  // Creator: lays out an empty ring in `area` (which must be exactly bytes_for(capacity)).
  [[nodiscard]] static sys::Result<RingArea, RingAttachError> init(std::span<std::byte> area,
                                                                   std::uint64_t capacity,
                                                                   std::uint32_t max_payload);
  // Peer: validates the header (read once) against the area's real size.
  [[nodiscard]] static sys::Result<RingArea, RingAttachError> attach(std::span<std::byte> area);

  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint32_t max_payload() const noexcept { return max_payload_; }

 private:
  friend class FrameProducer;
  friend class FrameConsumer;
  friend struct RingAreaTestAccess;
  RingArea() = default;
  std::atomic_ref<std::uint64_t> head() const noexcept { return std::atomic_ref(*head_); }
  std::atomic_ref<std::uint64_t> tail() const noexcept { return std::atomic_ref(*tail_); }
  std::atomic_ref<std::uint32_t> consumer_waiting() const noexcept {
    return std::atomic_ref(*consumer_waiting_);
  }
  std::atomic_ref<std::uint64_t> producer_wants() const noexcept {
    return std::atomic_ref(*producer_wants_);
  }

  std::byte* data_ = nullptr;
  std::uint64_t* head_ = nullptr;
  std::uint64_t* tail_ = nullptr;
  std::uint32_t* consumer_waiting_ = nullptr;
  std::uint64_t* producer_wants_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint32_t max_payload_ = 0;
};

enum class Reserve : std::uint8_t {
  kReserved,  // payload span is writable; finish with commit()
  kFull,      // no room now (after try_reserve: nothing armed; after reserve_or_arm: armed)
  kTooLarge,  // payload larger than the ring's max_payload: never fits, drop and count
};

struct Reservation {
  Reserve status;
  std::span<std::byte> payload;  // valid only for kReserved
};

// The writing side. Owned by exactly one thread of one process.
class FrameProducer {
 public:
  // `consumer_doorbell` wakes the consumer; it may be null for a polling consumer.
  FrameProducer(RingArea area, Doorbell* consumer_doorbell) noexcept;

  // Room for a record of `payload_len` bytes, or kFull. Never sleeps. On kFull any
  // pending records are published first, so a polling caller cannot hold back the
  // records the consumer needs to free space.
  [[nodiscard]] Reservation try_reserve(std::uint32_t payload_len) noexcept;
  // Like try_reserve, but on kFull the producer's wake request is armed and the ring
  // re-checked after [F3]: the caller may then block on its own doorbell, which the
  // consumer rings once enough bytes are free (or the ring is empty).
  [[nodiscard]] Reservation reserve_or_arm(std::uint32_t payload_len) noexcept;
  // Withdraws a wake request left armed (e.g. the caller stops waiting for other reasons).
  void disarm() noexcept;

  // Completes the reservation with the bytes actually written (<= reserved length).
  // The record joins the pending batch; the consumer sees it after publish(), or at once
  // when the batch reaches an eighth of the ring: a caller that batches by count cannot
  // hold a whole ring of large frames back from the consumer (no pipelining).
  void commit(std::uint32_t payload_len) noexcept;
  // Makes every committed record visible with one index store, then wakes a sleeping
  // consumer.
  void publish() noexcept;

  // Convenience: copies `payload` in as one record (reserve, copy, commit). No publish.
  [[nodiscard]] Reserve try_push(std::span<const std::byte> payload) noexcept;

  [[nodiscard]] const RingCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] std::uint64_t free_bytes() const noexcept { return area_.capacity_ - (head_ - cached_tail_); }
  [[nodiscard]] bool has_pending() const noexcept { return head_ != published_head_; }
  [[nodiscard]] const RingArea& area() const noexcept { return area_; }

 private:
  bool has_space(std::uint64_t bytes) noexcept;

  RingArea area_;
  Doorbell* consumer_doorbell_;
  std::uint64_t mask_;
  std::uint64_t head_;            // next write position (local, authoritative)
  std::uint64_t published_head_;  // last value stored to the shared head
  std::uint64_t cached_tail_;     // last tail read from the consumer
  std::uint64_t reserved_bytes_ = 0;
  std::uint64_t batch_limit_;     // pending bytes that trigger a publish from commit()
  std::uint64_t wants_ = 0;       // bytes the last kFull was short of
  bool armed_ = false;
  RingCounters counters_;
};

enum class Pop : std::uint8_t {
  kRecord,   // payload is valid until consume() / the next peek
  kEmpty,    // nothing published (after peek_or_arm: armed, caller may block)
  kCorrupt,  // the ring was corrupt: counted and, for a bad record, resynchronised to
             // the producer's head; error says why. Nothing was consumed.
};

struct PopResult {
  Pop status;
  std::span<const std::byte> payload;  // in shared memory: copy it out once, then consume()
  RingError error = RingError::kCount;
};

// The reading side. Owned by exactly one thread of one process.
class FrameConsumer {
 public:
  // `producer_doorbell` wakes a producer waiting for space; null if it never sleeps.
  FrameConsumer(RingArea area, Doorbell* producer_doorbell) noexcept;

  // The next record without consuming it. On kEmpty, consumed records are released
  // first so a producer waiting for space is never held back by a polling consumer.
  [[nodiscard]] PopResult peek() noexcept;
  // Like peek, but on kEmpty the wake request is armed and head re-checked after [F2]:
  // the caller may then block on its doorbell. Any record found clears the request.
  [[nodiscard]] PopResult peek_or_arm() noexcept;
  // Withdraws a wake request (e.g. after waking, or when giving up on waiting).
  void disarm() noexcept;
  // Consumes the record returned by the last peek (its bytes may be overwritten after the
  // next release(), which happens by itself once an eighth of the ring is consumed).
  void consume() noexcept;
  // Returns every consumed byte to the producer with one index store, then wakes a
  // producer waiting for space if enough is now free.
  void release() noexcept;

  [[nodiscard]] const RingCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] const RingArea& area() const noexcept { return area_; }

 private:
  PopResult corrupt(RingError e, std::uint64_t resync_to) noexcept;
  bool refresh_head() noexcept;  // false: head word invalid (counted, tail kept)

  RingArea area_;
  Doorbell* producer_doorbell_;
  std::uint64_t mask_;
  std::uint64_t tail_;           // next read position (local, authoritative)
  std::uint64_t released_tail_;  // last value stored to the shared tail
  std::uint64_t cached_head_;    // last validated head read from the producer
  std::uint64_t current_bytes_ = 0;
  std::uint64_t batch_limit_;    // unreleased bytes that trigger a release from consume()
  std::uint32_t current_payload_ = 0;
  bool armed_ = false;
  RingError last_head_error_ = RingError::kCount;
  unsigned bad_head_reads_ = 0;  // consecutive invalid head reads
  RingCounters counters_;
};

}  // namespace vswitch::shm
