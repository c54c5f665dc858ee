// The virtio-net datapath on top of SplitQueue: what the device does with the guest's
// transmit queue and receive queue (virtio 1.x, 5.1.6), independent of how the guest is
// attached (vhost-user) and of where frames go (the switch's channels).
//
// TX: a chain holds the 12-byte virtio-net header and the frame, device-readable only,
// split over any number of descriptors. It is gathered into the caller's buffer (a channel
// record: the only copy), then the header is validated against the frame. A chain with a
// device-writable buffer, with no frame after the header, larger than the largest record,
// or with an invalid header goes back to the guest with length 0 and is counted; TX
// completions are used elements like any other, so the guest gets its interrupt.
//
// RX: a frame needs header + frame bytes of device-writable buffers. With MRG_RXBUF it may
// take several chains (num_buffers in the first header, written before anything is
// published); without, one chain must hold it. Chains popped but not yet needed are kept
// in a pool for the next frame, so nothing is ever un-popped or returned twice. When the
// guest has not posted enough, deliver() says kNoBuffers and keeps what it has: the caller
// holds the frame, re-enables kicks (SplitQueue::enable_notification) and retries.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "endpoints/virtio/net_header.hpp"
#include "endpoints/virtio/split_queue.hpp"

namespace vswitch::endpoints::virtio {

enum class TxError : std::uint8_t {
  kWritableBuffer,  // a device-writable buffer in a TX chain
  kNoFrame,         // nothing (or less than an Ethernet header) after the virtio-net header
  kTooLarge,        // more than the largest record
  kBadHeader,       // the virtio-net header failed validation
  kOffloadNotNegotiated,  // NEEDS_CSUM or a gso_type the driver did not negotiate
  kBadGsoSize,      // gso_size not smaller than the frame
  kBadHdrLen,       // hdr_len beyond the frame
  kCount,
};
std::string_view to_string(TxError e);

enum class RxDrop : std::uint8_t {
  kReadableBuffer,   // an RX chain with a device-readable buffer: returned unused
  kBufferTooSmall,   // the frame cannot fit: without MRG_RXBUF the next chain is too small,
                     // with it even every buffer the queue can hold is too little
  kReturnedForOrder, // a pooled chain given back empty because a bad chain came after it
                     // (completion stays in avail order: see RxQueue)
  kCount,
};
std::string_view to_string(RxDrop e);

struct NetQueueCounters {
  std::uint64_t tx_frames = 0;
  std::uint64_t tx_bytes = 0;
  std::uint64_t rx_frames = 0;
  std::uint64_t rx_bytes = 0;
  std::uint64_t rx_buffers_used = 0;
  std::uint64_t rx_no_buffers = 0;  // deliver() had to wait for the guest
  std::uint64_t bad_chains = 0;     // chains returned with length 0, TX and RX, every reason
  std::array<std::uint64_t, static_cast<std::size_t>(ChainError::kCount)> chain_errors{};  // ... malformed, why
  std::array<std::uint64_t, static_cast<std::size_t>(TxError::kCount)> tx_errors{};
  std::array<std::uint64_t, static_cast<std::size_t>(RxDrop::kCount)> rx_drops{};
};

struct TxResult {
  enum class Status : std::uint8_t { kFrame, kEmpty, kBroken } status;
  std::size_t bytes = 0;  // kFrame: header + frame bytes in `out`
};

// What the driver negotiated that bears on the TX headers it may write (virtio 1.x
// 5.1.6.2.1): a header that asks for more is refused (TxError::kOffloadNotNegotiated).
// UDP fragmentation (HOST_UFO) and USO (HOST_USO) are never offered.
struct TxOffloads {
  bool csum = false;  // VIRTIO_NET_F_CSUM: NEEDS_CSUM
  bool tso4 = false;  // VIRTIO_NET_F_HOST_TSO4: GSO_TCPV4
  bool tso6 = false;  // VIRTIO_NET_F_HOST_TSO6: GSO_TCPV6
  bool ecn = false;   // VIRTIO_NET_F_HOST_ECN: GSO_ECN
};

// Checks a parsed TX header against the negotiated offloads and the frame it came with
// (frame_len: the bytes after the header), and clears the flags a driver must not set
// (DATA_VALID, RSC_INFO). The error, if the chain must be refused.
[[nodiscard]] std::optional<TxError> check_tx_header(NetHeader& h, std::size_t frame_len, const TxOffloads& offloads);

// Takes TX chains until one yields a frame (bad ones are returned with length 0 and
// counted), gathers it into `out`, checks its header (check_tx_header: the header in
// `out` is rewritten without DATA_VALID and RSC_INFO), and returns the chain (length 0:
// nothing written). The caller publishes and notifies.
TxResult tx_pop(SplitQueue& q, std::span<std::byte> out, const TxOffloads& offloads, NetQueueCounters& counters);

class RxQueue {
 public:
  explicit RxQueue(bool mergeable_buffers) : mergeable_(mergeable_buffers) {}
  // Whether a frame may span several chains (VIRTIO_NET_F_MRG_RXBUF negotiated).
  [[nodiscard]] bool mergeable() const noexcept { return mergeable_; }

  enum class Status : std::uint8_t { kDelivered, kNoBuffers, kDropped, kBroken };
  // Writes header (num_buffers set) + frame into guest buffers and stages their used
  // elements; the caller publishes and notifies. `head`, when given, is written in place of
  // the frame's first head.size() bytes (a private copy of bytes the caller checked).
  Status deliver(SplitQueue& q, const NetHeader& header, std::span<const std::byte> frame,
                 NetQueueCounters& counters, std::span<const std::byte> head = {});
  // Returns every pooled chain unused (length 0), e.g. before the queue stops.
  void release_pool(SplitQueue& q);
  // Drops the pool without touching the queue (it is gone with the guest's memory).
  void forget_pool() noexcept {
    pool_.clear();
    pool_bytes_ = 0;
  }
  [[nodiscard]] std::size_t pooled() const noexcept { return pool_.size(); }

 private:
  bool fill_pool(SplitQueue& q, std::uint64_t need, NetQueueCounters& counters);
  bool mergeable_;
  std::vector<Chain> pool_;      // popped, writable-only chains, oldest first
  std::uint64_t pool_bytes_ = 0;
};

}  // namespace vswitch::endpoints::virtio
