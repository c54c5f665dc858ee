// FrameRing: a single-producer single-consumer ring of variable-length records in shared
// memory, with the sleep handshake for both directions built into its API.
//
// Layout of a ring area (all offsets from its 64-byte-aligned start). Each control word
// has a 128-byte slot of its own: x86 L2 prefetchers fetch 64-byte lines in pairs, so
// 64-byte spacing would still let the producer's reads pull the consumer's lines.
//
//   0    RingHeader         immutable after creation (capacity, max payload)
//   128  head               written by the producer only (free-running byte index)
//   256  tail               written by the consumer only (free-running byte index)
//   384  consumer_waiting   set by the consumer before it sleeps, cleared by either side
//   388  wake_on_full       set by the consumer: it may sleep on a timer without asking to
//                           be woken, so a producer that finds the ring full rings it
//                           (advisory: a missed ring costs a wait for that timer, no more)
//   512  producer_wants     bytes the producer waits for, set by it before it sleeps
//   640  data[capacity]     records
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
// sleeps with work pending and nobody rings: a multicore stall that never recovers.
//
// Everything in the area is untrusted: the consumer validates head and every record
// header it reads (once, into a local), the producer validates tail. A corrupt ring is
// counted, resynchronised and the caller keeps running; nothing is read or written
// outside the data area.
#pragma once

#include <array>
#include <cassert>
#include <cstring>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "shm/doorbell.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::shm {

inline constexpr std::uint32_t kRecordHeaderBytes = 8;
inline constexpr std::uint32_t kMaxFrameBytes = 65536;
// The largest payload a channel carries unless its spec says otherwise: one 64 KiB GSO
// frame plus room for what the layer above puts in front of it (the switch: a 12-byte
// virtio-net header; its channels are always sized from the topology's max_frame).
inline constexpr std::uint32_t kDefaultMaxPayload = kMaxFrameBytes + 64;

constexpr std::uint64_t align8(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t{7}; }
constexpr std::uint64_t record_bytes(std::uint64_t payload) noexcept {
  return align8(kRecordHeaderBytes + payload);
}

namespace detail {
inline constexpr std::uint32_t kKindData = 0x41544144;  // "DATA"
inline constexpr std::uint32_t kKindPad = 0x44444150;   // "PADD"
// Bit-for-bit the 8 bytes in front of every record. Untrusted on the consumer side:
// copied out once and only the copy is used.
struct RecordHeader {
  std::uint32_t length;  // payload bytes (pad: bytes after this header up to the end)
  std::uint32_t kind;    // kKindData or kKindPad
};
static_assert(sizeof(RecordHeader) == kRecordHeaderBytes);
}  // namespace detail

struct RingHeader {
  std::uint64_t capacity;     // data bytes; a power of two, >= record_bytes(max_payload)
  std::uint32_t max_payload;  // largest record payload
  std::uint32_t data_offset;  // kRingDataOffset
  std::uint64_t reserved[6];
};
static_assert(sizeof(RingHeader) == 64);

inline constexpr std::uint32_t kRingHeadOffset = 128;
inline constexpr std::uint32_t kRingTailOffset = 256;
inline constexpr std::uint32_t kRingConsumerWaitingOffset = 384;
inline constexpr std::uint32_t kRingWakeOnFullOffset = 388;
inline constexpr std::uint32_t kRingProducerWantsOffset = 512;
inline constexpr std::uint32_t kRingDataOffset = 640;
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

// The five control words at one moment (each loaded on its own, relaxed): for diagnostics
// (vswitchctl channels), never for decisions.
struct RingSnapshot {
  std::uint64_t head;
  std::uint64_t tail;
  std::uint32_t consumer_waiting;
  std::uint64_t producer_wants;
  std::uint32_t wake_on_full;  // the consumer sleeps on a coalescing timer (FrameConsumer::set_wake_on_full)
};

// A validated view of a ring area. Only init() and attach() can build one.
class RingArea {
 public:
  [[nodiscard]] RingSnapshot snapshot() const noexcept {
    return {head().load(std::memory_order_relaxed), tail().load(std::memory_order_relaxed),
            consumer_waiting().load(std::memory_order_relaxed), producer_wants().load(std::memory_order_relaxed),
            wake_on_full().load(std::memory_order_relaxed)};
  }
  [[nodiscard]] static constexpr std::uint64_t bytes_for(std::uint64_t capacity) noexcept {
    return kRingDataOffset + capacity;
  }
  // Creator: lays out an empty ring in `area` (which must be exactly bytes_for(capacity)).
  [[nodiscard]] static sys::Result<RingArea, RingAttachError> init(std::span<std::byte> area,
                                                                   std::uint64_t capacity,
                                                                   std::uint32_t max_payload);
  // Peer: validates the header (read once) against the area's real size.
  [[nodiscard]] static sys::Result<RingArea, RingAttachError> attach(std::span<std::byte> area);
  // Peer told the geometry by the creator (see Region::attach_sized): checks `capacity` and
  // `max_payload` against the area's real size and reads nothing from its header, which the
  // other side can write.
  [[nodiscard]] static sys::Result<RingArea, RingAttachError> adopt(std::span<std::byte> area,
                                                                    std::uint64_t capacity,
                                                                    std::uint32_t max_payload);

  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint32_t max_payload() const noexcept { return max_payload_; }
  // The consumer's wake-request word, for a doorbell that sleeps on the word itself
  // (FutexDoorbell). Only ever accessed atomically; nothing else may use it.
  [[nodiscard]] std::uint32_t* consumer_waiting_word() const noexcept { return consumer_waiting_; }

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
  std::atomic_ref<std::uint32_t> wake_on_full() const noexcept { return std::atomic_ref(*wake_on_full_); }

  std::byte* data_ = nullptr;
  std::uint64_t* head_ = nullptr;
  std::uint64_t* tail_ = nullptr;
  std::uint32_t* consumer_waiting_ = nullptr;
  std::uint32_t* wake_on_full_ = nullptr;
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
  // `consumer_doorbell` wakes the consumer. Null declares a polling consumer that never
  // calls peek_or_arm(): publish() then skips the handshake ([F1] and the flag check),
  // which is what a sleeping consumer pays for.
  FrameProducer(RingArea area, Doorbell* consumer_doorbell) noexcept;

  // Room for a record of `payload_len` bytes, or kFull. Never sleeps. On kFull any
  // pending records are published first, so a polling caller cannot hold back the
  // records the consumer needs to free space.
  [[nodiscard]] inline Reservation try_reserve(std::uint32_t payload_len) noexcept;
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
  inline void commit(std::uint32_t payload_len) noexcept;
  // Makes every committed record visible with one index store, then wakes a sleeping
  // consumer.
  void publish() noexcept;

  // Burst: writes up to lengths.size() records, record i of lengths[i] bytes filled by
  // fill(i, std::span<std::byte> payload), then publishes them with one index store.
  // Stops at the first record that does not fit (or is too large); returns how many
  // were written. The per-record bookkeeping stays in registers, which the one-record
  // calls cannot do (every payload store may alias the producer's fields).
  template <typename Fill>
  std::size_t try_push_burst(std::span<const std::uint32_t> lengths, Fill&& fill) noexcept;

  // Convenience: copies `payload` in as one record (reserve, copy, commit). No publish.
  [[nodiscard]] Reserve try_push(std::span<const std::byte> payload) noexcept;

  // The ring was found full: rings the consumer when it asked for that (wake_on_full),
  // whether or not it armed its wake request. Call after publish(), so that what it
  // wakes for is visible. Returns whether it rang.
  bool ring_if_consumer_wakes_on_full() noexcept;

  [[nodiscard]] const RingCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] std::uint64_t free_bytes() const noexcept { return area_.capacity_ - (head_ - cached_tail_); }
  // Whether at least `bytes` are free now: re-reads tail ([A2]) only when the last one
  // read says no. Reserves nothing (for a caller deciding whether to send at all).
  [[nodiscard]] bool has_free(std::uint64_t bytes) noexcept { return has_space(bytes); }
  [[nodiscard]] bool has_pending() const noexcept { return head_ != published_head_; }
  [[nodiscard]] const RingArea& area() const noexcept { return area_; }

 private:
  bool has_space(std::uint64_t bytes) noexcept;
  Reservation try_reserve_slow(std::uint32_t payload_len) noexcept;

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
  // `producer_doorbell` wakes a producer waiting for space. Null declares a producer that
  // never calls reserve_or_arm(): release() then skips [F4] and the request check.
  FrameConsumer(RingArea area, Doorbell* producer_doorbell) noexcept;

  // The next record without consuming it. On kEmpty, consumed records are released
  // first so a producer waiting for space is never held back by a polling consumer.
  [[nodiscard]] inline PopResult peek() noexcept;
  // Like peek, but on kEmpty the wake request is armed and head re-checked after [F2]:
  // the caller may then block on its doorbell. Any record found clears the request.
  [[nodiscard]] PopResult peek_or_arm() noexcept;
  // Withdraws a wake request (e.g. after waking, or when giving up on waiting).
  void disarm() noexcept;
  // Asks producers that find the ring full to ring this consumer even while it has not
  // armed its wake request (a consumer that sleeps on a timer to batch its wake-ups).
  void set_wake_on_full(bool on) noexcept;
  // Consumes the record returned by the last peek (its bytes may be overwritten after the
  // next release(), which happens by itself once an eighth of the ring is consumed).
  inline void consume() noexcept;
  // Returns every consumed byte to the producer with one index store, then wakes a
  // producer waiting for space if enough is now free.
  void release() noexcept;

  // For a consumer whose release is a commit that must come after something of its own
  // (an endpoint that first makes a guest see what it delivered: see EndpointLoop's
  // delivery journal): consumed records are then released only by release(), never by
  // consume(), by a peek() that finds the ring empty or by a resynchronisation after
  // corruption (what it skips is released likewise, later). release_due() says when an
  // eighth of the ring waits to be released, where consume() would have released it.
  void set_defer_release(bool on) noexcept { defer_release_ = on; }
  [[nodiscard]] bool release_due() const noexcept { return tail_ - released_tail_ >= batch_limit_; }
  // Where consumption stands (local, not yet released) and what the producer last had
  // released to it.
  [[nodiscard]] std::uint64_t consumed_to() const noexcept { return tail_; }
  [[nodiscard]] std::uint64_t released_to() const noexcept { return released_tail_; }
  // A successor consumer taking over from one that died after handing records on but
  // before releasing them: skips to `tail` and releases it. Only forward, only to a
  // record boundary (the record headers in between are walked) no further than the
  // producer's published head (read here); returns false, changing nothing, for any
  // other `tail`.
  bool skip_to(std::uint64_t tail) noexcept;

  // Burst: hands up to `max` records to f(std::span<const std::byte> payload) (which must
  // copy what it needs: the bytes are released when this returns), then releases them
  // with one index store, like boost's consume_all. Stops early when the ring is empty or
  // corrupt (a corrupt ring is counted and resynchronised as by peek()). Returns the
  // number of records. Pick `max` so a burst stays well below the ring's capacity
  // (a quarter, say): the producer gets none of the space back until the burst ends.
  template <typename F>
  std::size_t consume_burst(std::size_t max, F&& f) noexcept;

  [[nodiscard]] const RingCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] const RingArea& area() const noexcept { return area_; }

 private:
  PopResult peek_slow() noexcept;
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
  bool defer_release_ = false;
  RingError last_head_error_ = RingError::kCount;
  unsigned bad_head_reads_ = 0;  // consecutive invalid head reads
  RingCounters counters_;
};

// ---------------------------------------------------------------------------------------
// Fast paths, inline: the common case of each per-record call, with every check of the
// full version. Anything else (refreshing the other side's index, padding, corruption,
// arming) is the out-of-line slow path in frame_ring.cpp.

inline Reservation FrameProducer::try_reserve(std::uint32_t payload_len) noexcept {
  const std::uint64_t need = record_bytes(payload_len);
  const std::uint64_t pos = head_ & mask_;
  if (payload_len <= area_.max_payload_ && need <= area_.capacity_ - pos &&
      area_.capacity_ - (head_ - cached_tail_) >= need) {
    reserved_bytes_ = need;
    return {Reserve::kReserved,
            std::span<std::byte>(area_.data_ + pos + kRecordHeaderBytes, payload_len)};
  }
  return try_reserve_slow(payload_len);
}

inline void FrameProducer::commit(std::uint32_t payload_len) noexcept {
  const std::uint64_t bytes = record_bytes(payload_len);
  assert(bytes <= reserved_bytes_ && "commit() longer than the reservation");
  if (bytes > reserved_bytes_) return;  // caller bug (asserted above): keep the ring intact
  const detail::RecordHeader h{payload_len, detail::kKindData};
  std::memcpy(area_.data_ + (head_ & mask_), &h, sizeof h);
  head_ += bytes;
  reserved_bytes_ = 0;
  ++counters_.records;
  counters_.bytes += payload_len;
  if (head_ - published_head_ >= batch_limit_) publish();
}

inline PopResult FrameConsumer::peek() noexcept {
  if (tail_ != cached_head_) {
    const std::uint64_t pos = tail_ & mask_;
    detail::RecordHeader h;
    std::memcpy(&h, area_.data_ + pos, sizeof h);  // read once
    const std::uint64_t bytes = record_bytes(h.length);
    if (h.kind == detail::kKindData && h.length <= area_.max_payload_ &&
        bytes <= area_.capacity_ - pos && bytes <= cached_head_ - tail_) {
      current_bytes_ = bytes;
      current_payload_ = h.length;
      return {Pop::kRecord,
              std::span<const std::byte>(area_.data_ + pos + kRecordHeaderBytes, h.length)};
    }
  }
  return peek_slow();
}

inline void FrameConsumer::consume() noexcept {
  if (current_bytes_ == 0) return;
  tail_ += current_bytes_;
  current_bytes_ = 0;
  ++counters_.records;
  counters_.bytes += current_payload_;
  if (tail_ - released_tail_ >= batch_limit_ && !defer_release_) release();
}

template <typename Fill>
std::size_t FrameProducer::try_push_burst(std::span<const std::uint32_t> lengths, Fill&& fill) noexcept {
  // Locals, not members: stores into the payload (std::byte) may alias any member, so
  // members would be reloaded and stored back around every record.
  std::uint64_t head = head_;
  const std::uint64_t tail = cached_tail_;
  const std::uint64_t capacity = area_.capacity_;
  const std::uint64_t mask = mask_;
  const std::uint32_t max_payload = area_.max_payload_;
  std::byte* const data = area_.data_;
  std::uint64_t bytes = 0;
  std::size_t i = 0;
  for (; i < lengths.size(); ++i) {
    const std::uint32_t len = lengths[i];
    const std::uint64_t need = record_bytes(len);
    const std::uint64_t pos = head & mask;
    if (len > max_payload || need > capacity - pos || capacity - (head - tail) < need) break;
    const detail::RecordHeader h{len, detail::kKindData};
    std::memcpy(data + pos, &h, sizeof h);
    fill(i, std::span<std::byte>(data + pos + kRecordHeaderBytes, len));
    head += need;
    bytes += len;
  }
  head_ = head;
  counters_.records += i;
  counters_.bytes += bytes;
  // The rest, one at a time through the full path (pads, refreshing the tail, too large).
  for (; i < lengths.size(); ++i) {
    Reservation r = try_reserve(lengths[i]);
    if (r.status != Reserve::kReserved) break;
    fill(i, r.payload);
    commit(lengths[i]);
  }
  publish();
  return i;
}

template <typename F>
std::size_t FrameConsumer::consume_burst(std::size_t max, F&& f) noexcept {
  std::size_t n = 0;
  while (n < max) {
    PopResult first = peek();  // full checks; refreshes head, skips pads, handles corruption
    if (first.status != Pop::kRecord) break;
    f(first.payload);
    consume();
    ++n;
    // Then the records already known to be published, with the state in locals (see
    // try_push_burst) and every check of peek().
    std::uint64_t tail = tail_;
    const std::uint64_t head = cached_head_;
    const std::uint64_t capacity = area_.capacity_;
    const std::uint64_t mask = mask_;
    const std::uint32_t max_payload = area_.max_payload_;
    const std::byte* const data = area_.data_;
    std::uint64_t bytes = 0;
    std::size_t k = 0;
    while (n + k < max && tail != head) {
      const std::uint64_t pos = tail & mask;
      detail::RecordHeader h;
      std::memcpy(&h, data + pos, sizeof h);  // read once
      const std::uint64_t size = record_bytes(h.length);
      if (h.kind != detail::kKindData || h.length > max_payload || size > capacity - pos ||
          size > head - tail)
        break;  // a pad or a bad record: peek() deals with it
      f(std::span<const std::byte>(data + pos + kRecordHeaderBytes, h.length));
      tail += size;
      bytes += h.length;
      ++k;
    }
    tail_ = tail;
    counters_.records += k;
    counters_.bytes += bytes;
    n += k;
  }
  release();
  return n;
}

}  // namespace vswitch::shm
