#include "endpoints/virtio/split_queue.hpp"

#include <atomic>
#include <cstring>

#include "shm/sys/fence.hpp"

namespace vswitch::endpoints::virtio {
namespace {

constexpr std::uint64_t kMaxChainBytes = std::uint64_t{1} << 32;

std::atomic_ref<std::uint16_t> word16(std::span<std::byte> area, std::size_t offset) noexcept {
  return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(area.data() + offset));
}

bool aligned(const std::byte* p, std::size_t a) noexcept { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

}  // namespace

std::string_view to_string(ChainError e) {
  switch (e) {
    case ChainError::kHeadOutOfRange: return "head_out_of_range";
    case ChainError::kNextOutOfRange: return "next_out_of_range";
    case ChainError::kTooLong: return "chain_too_long";
    case ChainError::kIndirectWithNext: return "indirect_with_next";
    case ChainError::kIndirectNested: return "indirect_nested";
    case ChainError::kIndirectBadLength: return "indirect_bad_length";
    case ChainError::kIndirectTooLarge: return "indirect_too_large";
    case ChainError::kIndirectUnmapped: return "indirect_unmapped";
    case ChainError::kBufferUnmapped: return "buffer_unmapped";
    case ChainError::kReadableAfterWritable: return "readable_after_writable";
    case ChainError::kTooManyBytes: return "too_many_bytes";
    case ChainError::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(QueueError e) {
  switch (e) {
    case QueueError::kAvailIndexJump: return "avail_index_jump";
    case QueueError::kTooManyInFlight: return "too_many_in_flight";
    case QueueError::kCount: break;
  }
  return "unknown";
}

sys::Result<SplitQueue, std::string> SplitQueue::create(const GuestMemory& memory, const QueueLayout& layout,
                                                        std::uint16_t next_avail, std::uint16_t next_used) {
  const std::uint32_t n = layout.size;
  if (n == 0 || n > kMaxQueueSize || (n & (n - 1)) != 0)
    return sys::Unexpected("virtqueue: size " + std::to_string(n) + " is not a power of two in 1..32768");
  if (layout.desc_gpa % 16 != 0 || layout.avail_gpa % 2 != 0 || layout.used_gpa % 4 != 0)
    return sys::Unexpected(std::string("virtqueue: ring address misaligned (descriptors 16, avail 2, used 4)"));
  auto desc = memory.translate(layout.desc_gpa, std::uint64_t{16} * n);
  auto avail = memory.translate(layout.avail_gpa, 6 + std::uint64_t{2} * n);
  auto used = memory.translate(layout.used_gpa, 6 + std::uint64_t{8} * n);
  if (!desc) return sys::Unexpected(std::string("virtqueue: descriptor table not inside one guest memory region"));
  if (!avail) return sys::Unexpected(std::string("virtqueue: avail ring not inside one guest memory region"));
  if (!used) return sys::Unexpected(std::string("virtqueue: used ring not inside one guest memory region"));
  // The 16-bit ring words are accessed atomically: their host addresses must be aligned too.
  if (!aligned(avail->data(), 2) || !aligned(used->data(), 4))
    return sys::Unexpected(std::string("virtqueue: rings misaligned in the host mapping"));
  SplitQueue q(memory, layout, *desc, *avail, *used);
  q.reset(next_avail, next_used);
  return q;
}

SplitQueue::SplitQueue(const GuestMemory& memory, const QueueLayout& layout, std::span<std::byte> desc,
                       std::span<std::byte> avail, std::span<std::byte> used)
    : memory_(&memory), layout_(layout), desc_(desc), avail_(avail), used_(used) {}

void SplitQueue::reset(std::uint16_t next_avail, std::uint16_t next_used) {
  next_avail_ = cached_avail_idx_ = next_avail;
  next_used_ = published_used_ = signalled_used_ = next_used;
  signalled_used_valid_ = false;  // the first decision after a (re)start always notifies
  in_flight_ = 0;
  broken_ = false;
}

std::uint16_t SplitQueue::load_avail_idx() const noexcept {
  // [VA] acquire: ring entries and descriptors written before the driver's avail->idx
  //      store are visible to the reads that follow.
  return word16(avail_, 2).load(std::memory_order_acquire);
}

PopResult SplitQueue::bad(Chain& chain, ChainError e) {
  ++counters_.chain_errors[static_cast<std::size_t>(e)];
  chain.buffers.clear();
  chain.readable_bytes = chain.writable_bytes = 0;
  return {Pop::kBadChain, e};
}

PopResult SplitQueue::pop(Chain& chain) {
  chain.buffers.clear();
  chain.readable_bytes = chain.writable_bytes = 0;
  if (broken_) return {Pop::kBroken, ChainError::kCount, QueueError::kCount};
  const std::uint16_t size = layout_.size;
  if (cached_avail_idx_ == next_avail_) {
    cached_avail_idx_ = load_avail_idx();
    if (static_cast<std::uint16_t>(cached_avail_idx_ - next_avail_) > size) {
      broken_ = true;
      ++counters_.queue_errors[static_cast<std::size_t>(QueueError::kAvailIndexJump)];
      return {Pop::kBroken, ChainError::kCount, QueueError::kAvailIndexJump};
    }
    if (cached_avail_idx_ == next_avail_) return {Pop::kEmpty};
  }
  if (in_flight_ >= size) {
    broken_ = true;
    ++counters_.queue_errors[static_cast<std::size_t>(QueueError::kTooManyInFlight)];
    return {Pop::kBroken, ChainError::kCount, QueueError::kTooManyInFlight};
  }
  // The head, read once. From here on the head is ours to return exactly once.
  const std::uint16_t head =
      word16(avail_, 4 + 2 * std::size_t{static_cast<std::uint16_t>(next_avail_ & (size - 1))})
          .load(std::memory_order_relaxed);  // ordered by [VA]
  ++next_avail_;
  ++in_flight_;
  ++counters_.chains;
  chain.head = head;
  if (head >= size) return bad(chain, ChainError::kHeadOutOfRange);

  std::span<std::byte> table = desc_;
  std::uint32_t table_entries = size;
  std::uint32_t budget = size;  // descriptors this walk may still visit
  std::uint16_t index = head;
  bool in_indirect = false;
  bool seen_writable = false;
  std::uint64_t total = 0;
  for (;;) {
    if (index >= table_entries) return bad(chain, ChainError::kNextOutOfRange);
    if (budget == 0) return bad(chain, ChainError::kTooLong);
    --budget;
    Descriptor d;
    std::memcpy(&d, table.data() + std::size_t{16} * index, sizeof d);  // read once
    if (d.flags & kDescFlagIndirect) {
      if (in_indirect) return bad(chain, ChainError::kIndirectNested);
      if (d.flags & kDescFlagNext) return bad(chain, ChainError::kIndirectWithNext);
      if (d.len == 0 || d.len % 16 != 0) return bad(chain, ChainError::kIndirectBadLength);
      if (d.len / 16 > size) return bad(chain, ChainError::kIndirectTooLarge);
      auto t = memory_->translate(d.addr, d.len);
      if (!t) return bad(chain, ChainError::kIndirectUnmapped);
      table = *t;
      table_entries = d.len / 16;
      budget = table_entries;
      index = 0;
      in_indirect = true;
      continue;
    }
    const bool writable = (d.flags & kDescFlagWrite) != 0;
    if (!writable && seen_writable) return bad(chain, ChainError::kReadableAfterWritable);
    seen_writable = seen_writable || writable;
    total += d.len;
    if (total > kMaxChainBytes) return bad(chain, ChainError::kTooManyBytes);
    if (d.len != 0) {  // an empty buffer is accepted as zero bytes; it is never translated
      auto b = memory_->translate(d.addr, d.len);
      if (!b) return bad(chain, ChainError::kBufferUnmapped);
      chain.buffers.push_back(GuestBuffer{*b, writable});
      (writable ? chain.writable_bytes : chain.readable_bytes) += d.len;
    }
    if ((d.flags & kDescFlagNext) == 0) break;
    index = d.next;
  }
  return {Pop::kChain};
}

void SplitQueue::add_used(std::uint16_t head, std::uint32_t len) {
  const std::uint32_t elem[2] = {head, len};
  const std::size_t slot = static_cast<std::uint16_t>(next_used_ & (layout_.size - 1));
  std::memcpy(used_.data() + 4 + 8 * slot, elem, sizeof elem);  // published by [VR]
  ++next_used_;
  if (in_flight_ > 0) --in_flight_;
  ++counters_.used;
}

void SplitQueue::publish_used() {
  if (next_used_ == published_used_) return;
  // [VR] release: the used elements and every byte written into the returned buffers are
  //      visible before the driver sees the new used->idx.
  word16(used_, 2).store(next_used_, std::memory_order_release);
  published_used_ = next_used_;
}

bool SplitQueue::needs_notification() {
  // [VF1] orders the used->idx store [VR] before the loads of used_event / avail->flags
  //       below. Without it: we read the driver's old used_event while it reads our old
  //       used->idx after arming, and it sleeps waiting for an interrupt we do not send.
  sys::full_fence();
  bool notify;
  if (layout_.event_idx) {
    const std::uint16_t used_event =
        word16(avail_, 4 + 2 * std::size_t{layout_.size}).load(std::memory_order_relaxed);  // ordered by [VF1]
    const std::uint16_t now = published_used_;
    const std::uint16_t old = signalled_used_;
    // vring_need_event: the driver asked to hear about index used_event; it has been
    // passed when it lies in [old, now).
    notify = !signalled_used_valid_ ||
             static_cast<std::uint16_t>(now - used_event - 1) < static_cast<std::uint16_t>(now - old);
    signalled_used_ = now;
    signalled_used_valid_ = true;
  } else {
    notify = (word16(avail_, 0).load(std::memory_order_relaxed) & kAvailFlagNoInterrupt) == 0;  // after [VF1]
  }
  ++(notify ? counters_.notifications : counters_.suppressed);
  return notify;
}

bool SplitQueue::enable_notification() {
  if (layout_.event_idx) {
    // Kick me once the driver makes entry next_avail_ available (anything before it is
    // caught by the re-check below).
    word16(used_, 4 + 8 * std::size_t{layout_.size}).store(next_avail_, std::memory_order_relaxed);
  } else {
    word16(used_, 0).store(0, std::memory_order_relaxed);
  }
  // [VF2] orders the store above before the avail->idx re-read: without it the driver can
  //       read our old avail_event/NO_NOTIFY and skip the kick while we read its old
  //       avail->idx and sleep (the lost kick of the QEMU stall patch in the references).
  sys::full_fence();
  cached_avail_idx_ = load_avail_idx();
  return cached_avail_idx_ != next_avail_;
}

void SplitQueue::disable_notification() {
  if (!layout_.event_idx) word16(used_, 0).store(kUsedFlagNoNotify, std::memory_order_relaxed);
}

}  // namespace vswitch::endpoints::virtio
