#include "endpoints/virtio/net_queues.hpp"

#include <algorithm>
#include <cstring>

namespace vswitch::endpoints::virtio {

std::string_view to_string(TxError e) {
  switch (e) {
    case TxError::kWritableBuffer: return "tx_writable_buffer";
    case TxError::kNoFrame: return "tx_no_frame";
    case TxError::kTooLarge: return "tx_too_large";
    case TxError::kBadHeader: return "tx_bad_header";
    case TxError::kOffloadNotNegotiated: return "tx_offload_not_negotiated";
    case TxError::kBadGsoSize: return "tx_bad_gso_size";
    case TxError::kBadHdrLen: return "tx_bad_hdr_len";
    case TxError::kCount: break;
  }
  return "unknown";
}

std::string_view to_string(RxDrop e) {
  switch (e) {
    case RxDrop::kReadableBuffer: return "rx_readable_buffer";
    case RxDrop::kBufferTooSmall: return "rx_buffer_too_small";
    case RxDrop::kReturnedForOrder: return "rx_returned_for_order";
    case RxDrop::kCount: break;
  }
  return "unknown";
}

std::optional<TxError> check_tx_header(NetHeader& h, std::size_t frame_len, const TxOffloads& offloads) {
  // virtio 1.x 5.1.6.2.1: "The driver MUST NOT set the VIRTIO_NET_HDR_F_DATA_VALID and
  // VIRTIO_NET_HDR_F_RSC_INFO bits in flags." Passed on, DATA_VALID would let one guest
  // have its bad-checksum frames taken as verified by other guests and, through TAP, the
  // host: they are cleared, not passed on (the frame itself is still good).
  h.flags = static_cast<std::uint8_t>(h.flags & ~(kNetHdrFlagDataValid | kNetHdrFlagRscInfo));
  // 5.1.6.2.1: "If VIRTIO_NET_F_CSUM is not negotiated, the driver MUST set flags to
  // zero": NEEDS_CSUM is only for a driver that negotiated CSUM.
  if ((h.flags & kNetHdrFlagNeedsCsum) != 0 && !offloads.csum) return TxError::kOffloadNotNegotiated;
  // 5.1.6.2.1: "If VIRTIO_NET_F_HOST_TSO4 is negotiated, the driver MAY set gso_type to
  // VIRTIO_NET_HDR_GSO_TCPV4 [...], otherwise the driver MUST NOT" (likewise TSO6, UFO,
  // USO), and the GSO_ECN bit goes with HOST_ECN only ("unless the VIRTIO_NET_F_HOST_ECN
  // feature is negotiated, in which case the driver MUST set the VIRTIO_NET_HDR_GSO_ECN
  // bit"). UDP (UFO, USO) is never offered here.
  const auto gso = static_cast<std::uint8_t>(h.gso_type & ~kGsoEcn);
  if (gso == kGsoNone) return std::nullopt;
  const bool allowed = (gso == kGsoTcpV4 && offloads.tso4) || (gso == kGsoTcpV6 && offloads.tso6);
  if (!allowed || ((h.gso_type & kGsoEcn) != 0 && !offloads.ecn)) return TxError::kOffloadNotNegotiated;
  // gso_size is the payload of each segment (5.1.6.2): non-zero (parse() refuses 0) and,
  // since every segment repeats the frame's headers, smaller than the frame itself.
  if (h.gso_size >= frame_len) return TxError::kBadGsoSize;
  // hdr_len: the length of the headers (5.1.6.2), a hint the device does not rely on,
  // but never more than the frame.
  if (h.hdr_len > frame_len) return TxError::kBadHdrLen;
  return std::nullopt;
}

TxResult tx_pop(SplitQueue& q, std::span<std::byte> out, const TxOffloads& offloads, NetQueueCounters& counters) {
  Chain chain;
  for (;;) {
    const PopResult r = q.pop(chain);
    if (r.status == Pop::kEmpty) return {TxResult::Status::kEmpty};
    if (r.status == Pop::kBroken) return {TxResult::Status::kBroken};
    auto fail = [&](TxError e) {
      ++counters.tx_errors[static_cast<std::size_t>(e)];
      ++counters.bad_chains;
      q.add_used(chain.head, 0);
    };
    if (r.status == Pop::kBadChain) {
      ++counters.chain_errors[static_cast<std::size_t>(r.error)];
      ++counters.bad_chains;
      q.add_used(chain.head, 0);
      continue;
    }
    if (chain.writable_bytes != 0) {
      fail(TxError::kWritableBuffer);
      continue;
    }
    const std::uint64_t total = chain.readable_bytes;
    if (total < kNetHeaderBytes + 14) {
      fail(TxError::kNoFrame);
      continue;
    }
    if (total > out.size()) {
      fail(TxError::kTooLarge);
      continue;
    }
    // Gather: the one copy out of guest memory. Header and frame are validated from here
    // on, never from guest memory again.
    std::size_t at = 0;
    for (const GuestBuffer& b : chain.buffers) {
      std::memcpy(out.data() + at, b.bytes.data(), b.bytes.size());
      at += b.bytes.size();
    }
    auto parsed = parse(std::span<const std::byte>(out.data(), at));
    if (!parsed) {
      fail(TxError::kBadHeader);
      continue;
    }
    NetHeader h = parsed->get();
    if (auto e = check_tx_header(h, at - kNetHeaderBytes, offloads)) {
      fail(*e);
      continue;
    }
    out[0] = static_cast<std::byte>(h.flags);  // the only field check_tx_header changes
    q.add_used(chain.head, 0);  // nothing written into a TX chain
    ++counters.tx_frames;
    counters.tx_bytes += at - kNetHeaderBytes;
    return {TxResult::Status::kFrame, at};
  }
}

bool RxQueue::fill_pool(SplitQueue& q, std::uint64_t need, NetQueueCounters& counters) {
  // Without mergeable buffers only the first pooled chain matters.
  auto enough = [&] { return mergeable_ ? pool_bytes_ >= need : !pool_.empty(); };
  while (!enough() && pool_.size() < q.size()) {
    Chain c;
    const PopResult r = q.pop(c);
    if (r.status == Pop::kEmpty || r.status == Pop::kBroken) return false;
    if (r.status == Pop::kBadChain || c.readable_bytes != 0) {
      // Completion stays in the order the chains were made available, so that after a
      // crash "everything past used->idx" is exactly what was not completed (QEMU restarts
      // the ring there): chains pooled before this one go back first, empty, since a bad
      // chain cannot sit between a frame's buffers either.
      counters.rx_drops[static_cast<std::size_t>(RxDrop::kReturnedForOrder)] += pool_.size();
      release_pool(q);
      if (r.status == Pop::kBadChain) ++counters.chain_errors[static_cast<std::size_t>(r.error)];
      else ++counters.rx_drops[static_cast<std::size_t>(RxDrop::kReadableBuffer)];
      ++counters.bad_chains;
      q.add_used(c.head, 0);
      continue;
    }
    pool_bytes_ += c.writable_bytes;
    pool_.push_back(std::move(c));
  }
  return enough();
}

RxQueue::Status RxQueue::deliver(SplitQueue& q, const NetHeader& header, std::span<const std::byte> frame,
                                 NetQueueCounters& counters, std::span<const std::byte> head) {
  head = head.first(std::min(head.size(), frame.size()));
  const std::uint64_t need = kNetHeaderBytes + frame.size();
  if (!fill_pool(q, need, counters)) {
    if (pool_.size() >= q.size()) {  // every buffer the queue can hold is pooled: never enough
      ++counters.rx_drops[static_cast<std::size_t>(RxDrop::kBufferTooSmall)];
      return Status::kDropped;
    }
    if (q.broken()) return Status::kBroken;
    ++counters.rx_no_buffers;
    return Status::kNoBuffers;
  }
  if (!mergeable_ && pool_.front().writable_bytes < need) {
    ++counters.rx_drops[static_cast<std::size_t>(RxDrop::kBufferTooSmall)];
    return Status::kDropped;  // the chain stays pooled for a frame it can hold
  }
  // How many chains this frame takes.
  std::size_t chains = 0;
  for (std::uint64_t space = 0; space < need; ++chains) space += pool_[chains].writable_bytes;
  NetHeader h = header;
  h.num_buffers = static_cast<std::uint16_t>(chains);  // written before anything is published
  std::array<std::byte, kNetHeaderBytes> hdr{};
  write(h, std::span<std::byte, kNetHeaderBytes>(hdr));

  // Copy header, then the frame (its first bytes from `head`) across the chains' buffers,
  // in order.
  const std::span<const std::byte> parts[3] = {std::span<const std::byte>(hdr), head, frame.subspan(head.size())};
  std::size_t part = 0, off = 0;
  for (std::size_t k = 0; k < chains; ++k) {
    std::uint32_t written = 0;
    for (const GuestBuffer& b : pool_[k].buffers) {
      std::size_t room = b.bytes.size(), at = 0;
      while (room != 0 && part < 3) {
        const std::size_t n = std::min(room, parts[part].size() - off);
        if (n != 0) std::memcpy(b.bytes.data() + at, parts[part].data() + off, n);  // an empty part has no data()
        at += n;
        room -= n;
        off += n;
        written += static_cast<std::uint32_t>(n);
        if (off == parts[part].size()) {
          ++part;
          off = 0;
        }
      }
    }
    q.add_used(pool_[k].head, written);
    pool_bytes_ -= pool_[k].writable_bytes;
  }
  pool_.erase(pool_.begin(), pool_.begin() + static_cast<std::ptrdiff_t>(chains));
  ++counters.rx_frames;
  counters.rx_bytes += frame.size();
  counters.rx_buffers_used += chains;
  return Status::kDelivered;
}

void RxQueue::release_pool(SplitQueue& q) {
  for (const Chain& c : pool_) q.add_used(c.head, 0);
  pool_.clear();
  pool_bytes_ = 0;
}

}  // namespace vswitch::endpoints::virtio
