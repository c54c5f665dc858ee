#include "shm/frame_ring.hpp"

#include <cstring>
#include <new>

#include "shm/sys/fence.hpp"

namespace vswitch::shm {

namespace {

using detail::kKindData;
using detail::kKindPad;
using detail::RecordHeader;

RecordHeader read_record_header(const std::byte* at) noexcept {
  RecordHeader h;
  std::memcpy(&h, at, sizeof h);
  return h;
}

void write_record_header(std::byte* at, std::uint32_t length, std::uint32_t kind) noexcept {
  const RecordHeader h{length, kind};
  std::memcpy(at, &h, sizeof h);
}

constexpr bool is_power_of_two(std::uint64_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

std::size_t idx(RingError e) noexcept { return static_cast<std::size_t>(e); }

}  // namespace

std::string_view to_string(RingError e) {
  switch (e) {
    case RingError::kHeadOutOfRange: return "head out of range";
    case RingError::kHeadMisaligned: return "head misaligned";
    case RingError::kRecordKindInvalid: return "record kind invalid";
    case RingError::kRecordTooLarge: return "record length above max payload";
    case RingError::kRecordCrossesEnd: return "record crosses the end of the ring";
    case RingError::kRecordBeyondHead: return "record extends past the published head";
    case RingError::kPadLengthInvalid: return "pad record does not end at the ring end";
    case RingError::kTailOutOfRange: return "tail out of range";
    case RingError::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(RingAttachError e) {
  switch (e) {
    case RingAttachError::kAreaTooSmall: return "ring area smaller than its header";
    case RingAttachError::kMisaligned: return "ring area not 64-byte aligned";
    case RingAttachError::kCapacityNotPowerOfTwo: return "ring capacity is not a power of two";
    case RingAttachError::kCapacityOutOfRange: return "ring capacity out of range";
    case RingAttachError::kMaxPayloadTooLarge: return "max payload does not fit the ring";
    case RingAttachError::kBadDataOffset: return "bad data offset";
    case RingAttachError::kAreaSizeMismatch: return "ring area size disagrees with its capacity";
    case RingAttachError::kReservedNotZero: return "ring header reserved field not zero";
  }
  return "unknown";
}

namespace {

sys::Status<RingAttachError> check_geometry(std::span<std::byte> area, std::uint64_t capacity,
                                            std::uint32_t max_payload) {
  using sys::Unexpected;
  if (!is_power_of_two(capacity)) return Unexpected{RingAttachError::kCapacityNotPowerOfTwo};
  if (capacity < kMinRingCapacity || capacity > kMaxRingCapacity)
    return Unexpected{RingAttachError::kCapacityOutOfRange};
  if (max_payload == 0 || record_bytes(max_payload) > capacity)
    return Unexpected{RingAttachError::kMaxPayloadTooLarge};
  if (area.size() != RingArea::bytes_for(capacity)) return Unexpected{RingAttachError::kAreaSizeMismatch};
  return {};
}

}  // namespace

sys::Result<RingArea, RingAttachError> RingArea::init(std::span<std::byte> area,
                                                      std::uint64_t capacity,
                                                      std::uint32_t max_payload) {
  using sys::Unexpected;
  if (area.size() < kRingDataOffset) return Unexpected{RingAttachError::kAreaTooSmall};
  if (reinterpret_cast<std::uintptr_t>(area.data()) % 64 != 0)
    return Unexpected{RingAttachError::kMisaligned};
  if (auto ok = check_geometry(area, capacity, max_payload); !ok) return Unexpected{ok.error()};
  std::memset(area.data(), 0, kRingDataOffset);
  RingHeader h{};
  h.capacity = capacity;
  h.max_payload = max_payload;
  h.data_offset = kRingDataOffset;
  std::memcpy(area.data(), &h, sizeof h);
  // Visibility of this initial state to a peer process is ordered by the region's [R0].
  return attach(area);
}

sys::Result<RingArea, RingAttachError> RingArea::adopt(std::span<std::byte> area, std::uint64_t capacity,
                                                       std::uint32_t max_payload) {
  using sys::Unexpected;
  if (area.size() < kRingDataOffset) return Unexpected{RingAttachError::kAreaTooSmall};
  if (reinterpret_cast<std::uintptr_t>(area.data()) % 64 != 0)
    return Unexpected{RingAttachError::kMisaligned};
  if (auto ok = check_geometry(area, capacity, max_payload); !ok) return Unexpected{ok.error()};
  RingArea a;
  std::byte* base = area.data();
  a.head_ = reinterpret_cast<std::uint64_t*>(base + kRingHeadOffset);
  a.tail_ = reinterpret_cast<std::uint64_t*>(base + kRingTailOffset);
  a.consumer_waiting_ = reinterpret_cast<std::uint32_t*>(base + kRingConsumerWaitingOffset);
  a.wake_on_full_ = reinterpret_cast<std::uint32_t*>(base + kRingWakeOnFullOffset);
  a.producer_wants_ = reinterpret_cast<std::uint64_t*>(base + kRingProducerWantsOffset);
  a.data_ = base + kRingDataOffset;
  a.capacity_ = capacity;
  a.max_payload_ = max_payload;
  return a;
}

sys::Result<RingArea, RingAttachError> RingArea::attach(std::span<std::byte> area) {
  using sys::Unexpected;
  if (area.size() < kRingDataOffset) return Unexpected{RingAttachError::kAreaTooSmall};
  if (reinterpret_cast<std::uintptr_t>(area.data()) % 64 != 0)
    return Unexpected{RingAttachError::kMisaligned};
  RingHeader h;
  std::memcpy(&h, area.data(), sizeof h);  // read once; only the copy is used below
  if (h.data_offset != kRingDataOffset) return Unexpected{RingAttachError::kBadDataOffset};
  for (auto r : h.reserved)
    if (r != 0) return Unexpected{RingAttachError::kReservedNotZero};
  return adopt(area, h.capacity, h.max_payload);  // the geometry, checked there
}

// ---------------------------------------------------------------------------------------
// Producer

FrameProducer::FrameProducer(RingArea area, Doorbell* consumer_doorbell) noexcept
    : area_(area), consumer_doorbell_(consumer_doorbell), mask_(area.capacity_ - 1),
      batch_limit_(area.capacity_ / 8) {
  // Start where the shared indices are (a restarted producer re-attaches mid-stream).
  // relaxed: no data is read on the strength of these; [A2] in has_space() re-reads tail.
  const std::uint64_t tail = area_.tail().load(std::memory_order_relaxed);
  std::uint64_t head = area_.head().load(std::memory_order_relaxed);
  if (head - tail > area_.capacity_ || (head & 7) != 0) head = align8(tail);
  head_ = published_head_ = head;
  cached_tail_ = head - tail <= area_.capacity_ ? tail : head;
}

bool FrameProducer::has_space(std::uint64_t bytes) noexcept {
  if (area_.capacity_ - (head_ - cached_tail_) >= bytes) return true;
  // [A2] the consumer has finished reading every byte below tail. Pairs with [R2] in
  //      FrameConsumer::release().
  const std::uint64_t tail = area_.tail().load(std::memory_order_acquire);
  if (head_ - tail > area_.capacity_ || (tail & 7) != 0) {
    // Untrusted value: the consumer never lets tail pass our head or fall a ring behind.
    // Treat the ring as empty; the consumer's own validation resynchronises it.
    ++counters_.errors[idx(RingError::kTailOutOfRange)];
    ++counters_.resyncs;
    cached_tail_ = head_;
  } else {
    cached_tail_ = tail;
  }
  return area_.capacity_ - (head_ - cached_tail_) >= bytes;
}

Reservation FrameProducer::try_reserve_slow(std::uint32_t payload_len) noexcept {
  if (payload_len > area_.max_payload_) return {Reserve::kTooLarge, {}};
  const std::uint64_t need = record_bytes(payload_len);
  std::uint64_t pos = head_ & mask_;
  const std::uint64_t to_end = area_.capacity_ - pos;
  if (need > to_end) {
    // The record would cross the end: fill the rest with a pad record first. It joins
    // the pending batch like any record.
    if (!has_space(to_end)) {
      wants_ = to_end;
      publish();
      return {Reserve::kFull, {}};
    }
    write_record_header(area_.data_ + pos, static_cast<std::uint32_t>(to_end - kRecordHeaderBytes),
                        kKindPad);
    head_ += to_end;
    pos = 0;
  }
  if (!has_space(need)) {
    wants_ = need;  // <= capacity (checked at attach), so an empty ring always satisfies it
    publish();
    return {Reserve::kFull, {}};
  }
  reserved_bytes_ = need;
  return {Reserve::kReserved,
          std::span<std::byte>(area_.data_ + pos + kRecordHeaderBytes, payload_len)};
}

Reservation FrameProducer::reserve_or_arm(std::uint32_t payload_len) noexcept {
  Reservation r = try_reserve(payload_len);
  // try_reserve published everything pending on kFull, so the consumer can make progress.
  while (r.status == Reserve::kFull) {
    // Arm on every call, even if armed before: the consumer clears the request when it
    // rings, so a request from an earlier sleep may be gone.
    const std::uint64_t requested = wants_;
    area_.producer_wants().store(requested, std::memory_order_relaxed);  // ordered by [F3]
    armed_ = true;
    ++counters_.arms;
    // [F3] producer Dekker fence: orders the store of producer_wants before the re-read
    //      of tail in try_reserve(). Pairs with [F4] in FrameConsumer::release(). Without
    //      it the consumer may free space without seeing the request while we read the
    //      old tail: we sleep on a ring with room and nobody rings (free-send lost wakeup).
    sys::full_fence();
    r = try_reserve(payload_len);
    // Still full with the request we published: safe to sleep. If the shortfall changed
    // (a pad was written), publish the fresh figure and re-check again, never sleeping
    // on a request older than the re-check (rule d2.4).
    if (r.status == Reserve::kFull && wants_ == requested) return r;
  }
  if (armed_) disarm();
  return r;
}

void FrameProducer::disarm() noexcept {
  // relaxed: a stale request can only cause a spurious doorbell, which waiters tolerate.
  area_.producer_wants().store(0, std::memory_order_relaxed);
  armed_ = false;
}

void FrameProducer::publish() noexcept {
  if (head_ == published_head_) return;
  // [R1] every record header and payload byte below head_ is visible before the new head.
  //      Pairs with [A1] in FrameConsumer::refresh_head().
  area_.head().store(head_, std::memory_order_release);
  published_head_ = head_;
  ++counters_.batches;
  // A consumer without a doorbell polls and never arms: no handshake, no fence.
  if (consumer_doorbell_ == nullptr) return;
  // [F1] producer Dekker fence: orders [R1] before the load of consumer_waiting. Pairs
  //      with [F2] in FrameConsumer::peek_or_arm(). Without it the consumer can arm and
  //      re-read the old head while we read consumer_waiting == 0: it sleeps on data and
  //      nobody rings (a multicore stall: throughput that drops to zero for good).
  sys::full_fence();
  // relaxed: [F1] orders the load. exchange, not store(0): a plain store could erase a
  // newer arm by the consumer (rule d2.2).
  if (area_.consumer_waiting().load(std::memory_order_relaxed) != 0 &&
      area_.consumer_waiting().exchange(0, std::memory_order_relaxed) != 0) {
    ++counters_.wakes_sent;
    consumer_doorbell_->ring();
  }
}

bool FrameProducer::ring_if_consumer_wakes_on_full() noexcept {
  // relaxed: the word is the consumer's standing request, not a handshake. A stale read
  // either rings once for nothing or leaves the consumer to its timer; the records it
  // wakes for were published before (the caller's publish(), [R1]), and the doorbell's
  // write is a system call the consumer's wake-up follows.
  if (consumer_doorbell_ == nullptr || area_.wake_on_full().load(std::memory_order_relaxed) == 0) return false;
  ++counters_.wakes_sent;
  consumer_doorbell_->ring();
  return true;
}

Reserve FrameProducer::try_push(std::span<const std::byte> payload) noexcept {
  if (payload.size() > area_.max_payload_) return Reserve::kTooLarge;
  const auto len = static_cast<std::uint32_t>(payload.size());
  Reservation r = try_reserve(len);
  if (r.status != Reserve::kReserved) return r.status;
  if (len != 0) std::memcpy(r.payload.data(), payload.data(), len);  // an empty span may be null
  commit(len);
  return Reserve::kReserved;
}

// ---------------------------------------------------------------------------------------
// Consumer

FrameConsumer::FrameConsumer(RingArea area, Doorbell* producer_doorbell) noexcept
    : area_(area), producer_doorbell_(producer_doorbell), mask_(area.capacity_ - 1),
      batch_limit_(area.capacity_ / 8) {
  // A restarted consumer resumes at the shared tail; head is validated on first peek.
  const std::uint64_t tail = area_.tail().load(std::memory_order_relaxed);
  tail_ = released_tail_ = cached_head_ = tail & ~std::uint64_t{7};
}

PopResult FrameConsumer::corrupt(RingError e, std::uint64_t resync_to) noexcept {
  if (e != RingError::kHeadMisaligned && e != RingError::kHeadOutOfRange) ++counters_.errors[idx(e)];
  ++counters_.resyncs;
  // Drop everything up to the producer's head: nothing in between can be trusted.
  tail_ = resync_to & ~std::uint64_t{7};
  cached_head_ = tail_;
  current_bytes_ = 0;
  if (!defer_release_) release();  // deferring: with the caller's next commit, like any consumed byte
  return {Pop::kCorrupt, {}, e};
}

bool FrameConsumer::refresh_head() noexcept {
  // [A1] every record below head is fully written. Pairs with [R1] in
  //      FrameProducer::publish().
  const std::uint64_t head = area_.head().load(std::memory_order_acquire);
  RingError e = RingError::kCount;
  if ((head & 7) != 0) {
    e = RingError::kHeadMisaligned;
  } else if (head - tail_ > area_.capacity_) {
    e = RingError::kHeadOutOfRange;
  } else {
    cached_head_ = head;
    bad_head_reads_ = 0;
    return true;
  }
  ++counters_.errors[idx(e)];
  last_head_error_ = e;
  // A scribbled head word loses nothing: the producer keeps its head locally and
  // overwrites the word at its next publish, so the first time we keep our tail. If the
  // next look still finds it invalid, the two sides have diverged (e.g. the producer
  // overran a scribbled tail): resynchronise to the producer's head, dropping what lies
  // between, so neither side can stay stuck.
  if (++bad_head_reads_ >= 2) {
    bad_head_reads_ = 0;
    corrupt(e, head);
  }
  return false;
}

PopResult FrameConsumer::peek_slow() noexcept {
  for (;;) {
    if (tail_ == cached_head_) {
      if (!refresh_head()) return {Pop::kCorrupt, {}, last_head_error_};
      if (tail_ == cached_head_) {
        if (!defer_release_) release();  // hand back pads and consumed records before reporting empty
        return {Pop::kEmpty, {}};
      }
    }
    const std::uint64_t pos = tail_ & mask_;
    const std::uint64_t to_end = area_.capacity_ - pos;
    const std::uint64_t published = cached_head_ - tail_;
    const RecordHeader h = read_record_header(area_.data_ + pos);  // read once
    if (h.kind == kKindPad) {
      if (std::uint64_t{h.length} + kRecordHeaderBytes != to_end)
        return corrupt(RingError::kPadLengthInvalid, cached_head_);
      if (to_end > published) return corrupt(RingError::kRecordBeyondHead, cached_head_);
      tail_ += to_end;  // skip the pad; its bytes are released with the next batch
      continue;
    }
    if (h.kind != kKindData) return corrupt(RingError::kRecordKindInvalid, cached_head_);
    if (h.length > area_.max_payload_) return corrupt(RingError::kRecordTooLarge, cached_head_);
    const std::uint64_t bytes = record_bytes(h.length);
    if (bytes > to_end) return corrupt(RingError::kRecordCrossesEnd, cached_head_);
    if (bytes > published) return corrupt(RingError::kRecordBeyondHead, cached_head_);
    current_bytes_ = bytes;
    current_payload_ = h.length;
    return {Pop::kRecord,
            std::span<const std::byte>(area_.data_ + pos + kRecordHeaderBytes, h.length)};
  }
}

bool FrameConsumer::skip_to(std::uint64_t tail) noexcept {
  if ((tail & 7) != 0 || tail < tail_) return false;
  if (tail != tail_) {
    // [A1] as in refresh_head(): every record below head is fully written. Read here
    // without refresh_head()'s counting and resynchronising: a refusal changes nothing.
    const std::uint64_t head = area_.head().load(std::memory_order_acquire);
    if ((head & 7) != 0 || head - tail_ > area_.capacity_ || tail - tail_ > head - tail_) return false;
    // Only to a record boundary: the headers from tail_ on, each read once as peek() reads
    // them, must add up to `tail` exactly (a position inside a record would have the
    // next peek() take a frame's bytes for records).
    std::uint64_t pos = tail_;
    while (pos < tail) {
      const std::uint64_t at = pos & mask_;
      const std::uint64_t to_end = area_.capacity_ - at;
      const RecordHeader h = read_record_header(area_.data_ + at);
      std::uint64_t step = 0;
      if (h.kind == kKindPad && std::uint64_t{h.length} + kRecordHeaderBytes == to_end) {
        step = to_end;
      } else if (h.kind == kKindData && h.length <= area_.max_payload_ && record_bytes(h.length) <= to_end) {
        step = record_bytes(h.length);
      } else {
        return false;
      }
      pos += step;
    }
    if (pos != tail) return false;
    cached_head_ = head;
    tail_ = tail;
    current_bytes_ = 0;
  }
  release();  // [R2] inside
  return true;
}

PopResult FrameConsumer::peek_or_arm() noexcept {
  PopResult r = peek();
  if (r.status != Pop::kEmpty) {
    if (armed_) disarm();
    return r;
  }
  // peek() released everything consumed, so a producer waiting for space can go on.
  area_.consumer_waiting().store(1, std::memory_order_relaxed);  // ordered by [F2]
  armed_ = true;
  ++counters_.arms;
  // [F2] consumer Dekker fence: orders the store of consumer_waiting before the re-read
  //      of head below. Pairs with [F1] in FrameProducer::publish(). Without it we can
  //      read the old head while the producer reads consumer_waiting == 0: lost wakeup.
  sys::full_fence();
  r = peek();
  if (r.status != Pop::kEmpty) disarm();
  return r;
}

void FrameConsumer::disarm() noexcept {
  // relaxed: if the producer already took the request (exchange), a doorbell is on its
  // way and causes one spurious wakeup at most.
  area_.consumer_waiting().store(0, std::memory_order_relaxed);
  armed_ = false;
}

void FrameConsumer::set_wake_on_full(bool on) noexcept {
  // relaxed: a standing request the producer reads when it finds the ring full; nothing
  // is ordered by it (see FrameProducer::ring_if_consumer_wakes_on_full).
  area_.wake_on_full().store(on ? 1 : 0, std::memory_order_relaxed);
}

void FrameConsumer::release() noexcept {
  if (tail_ == released_tail_) return;
  // [R2] all reads of records below tail_ are done before the producer may reuse them.
  //      Pairs with [A2] in FrameProducer::has_space(). Release, not relaxed: on ARM a
  //      later store may otherwise pass our loads of the record (DPDK ecc7d10e44).
  area_.tail().store(tail_, std::memory_order_release);
  released_tail_ = tail_;
  ++counters_.batches;
  // A producer without a doorbell polls and never arms: no handshake, no fence.
  if (producer_doorbell_ == nullptr) return;
  // [F4] consumer Dekker fence: orders [R2] before the load of producer_wants. Pairs
  //      with [F3] in FrameProducer::reserve_or_arm(). Without it the producer can arm
  //      and re-read the old tail while we read producer_wants == 0: it sleeps on a ring
  //      with room (free-send lost wakeup).
  sys::full_fence();
  const std::uint64_t wants = area_.producer_wants().load(std::memory_order_relaxed);  // [F4]
  if (wants == 0) return;
  // cached_head_ may be older than the real head: that only overstates free space, so we
  // may wake early (the producer re-checks and re-arms), never too late. An empty ring
  // always wakes, so a request larger than can ever be free cannot strand the producer.
  const std::uint64_t free = area_.capacity_ - (cached_head_ - tail_);
  if ((free >= wants || tail_ == cached_head_) &&
      area_.producer_wants().exchange(0, std::memory_order_relaxed) != 0) {
    ++counters_.wakes_sent;
    producer_doorbell_->ring();
  }
}

}  // namespace vswitch::shm
