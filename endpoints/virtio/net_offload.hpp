// Software fallback for offloads a receiver did not negotiate (virtio 1.x, 5.1.6.2):
// what a NIC would do in hardware when a frame carries VIRTIO_NET_HDR_F_NEEDS_CSUM or a
// TCP gso_type but the guest accepted neither GUEST_CSUM nor GUEST_TSO4/6 (DPDK's
// virtio PMD, for one, negotiates them only with LRO / RX checksum offload enabled).
// A netns or a Linux guest sends 64 KiB TSO segments with partial checksums; such a
// receiver must get ordinary, checksummed frames of at most gso_size payload each.
//
// Both functions work on a private copy of the frame (never on shared memory, which may
// change under us) and check every offset they use against it first.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "endpoints/virtio/net_header.hpp"

namespace vswitch::endpoints::virtio {

enum class OffloadError : std::uint8_t {
  kNotTcp,            // gso_type is not TCPv4/TCPv6 (UDP fragmentation offload is never offered)
  kUnparsable,        // Ethernet / IP / TCP headers truncated, inconsistent or with IPv6 extensions
  kTooManySegments,   // more segments than the caller's limit
  kCount,
};
std::string_view to_string(OffloadError e);

// Completes a partial checksum in place: the ones' complement sum of frame[csum_start..]
// (whose checksum field already holds the pseudo-header sum) is folded, complemented and
// stored big-endian at csum_start + csum_offset (0 becomes 0xffff, as Linux writes it).
// Precondition: parse() validated the header against this frame (offsets in range).
void complete_checksum(const NetHeader& h, std::span<std::byte> frame) noexcept;

// The header a driver may be given (virtio 1.x 5.1.6.4.1): without GUEST_CSUM, flags must
// be zero (DATA_VALID included: the frame must then be fully checksummed, which the caller
// ensures first); RSC_INFO is never handed on (GUEST_RSC is not offered). num_buffers is
// left for the RX path to fill in.
[[nodiscard]] NetHeader header_for_driver(const NetHeader& h, bool guest_csum) noexcept;

// The Internet checksum (RFC 1071) of `bytes` added to `sum` (not folded, not complemented).
[[nodiscard]] std::uint64_t ones_complement_add(std::uint64_t sum, std::span<const std::byte> bytes) noexcept;
[[nodiscard]] std::uint16_t fold(std::uint64_t sum) noexcept;

// TCP segmentation of one GSO frame (Ethernet, optional 802.1Q tag, IPv4 without or with
// options / IPv6 without extension headers, TCP). Segment i carries payload bytes
// [i*gso_size, (i+1)*gso_size), sequence number advanced, IPv4 id + i and total length /
// IPv6 payload length fixed, FIN and PSH only on the last, CWR only on the first, and
// complete IP and TCP checksums.
class TcpSegmenter {
 public:
  // Parses `frame` (a private copy) described by `h`. On success segments() > 0.
  [[nodiscard]] static sys::Result<TcpSegmenter, OffloadError> parse(const NetHeader& h,
                                                                     std::span<const std::byte> frame,
                                                                     std::size_t max_segments);
  [[nodiscard]] std::size_t segments() const noexcept { return segments_; }
  // Bytes of Ethernet + IP + TCP headers, repeated in every segment.
  [[nodiscard]] std::size_t header_bytes() const noexcept { return headers_; }
  // Bytes of segment i (headers + payload).
  [[nodiscard]] std::size_t segment_bytes(std::size_t i) const noexcept;
  // Writes segment i into `out` (at least segment_bytes(i) long); returns its length.
  std::size_t build(std::size_t i, std::span<std::byte> out) const noexcept;

 private:
  TcpSegmenter() = default;
  std::span<const std::byte> frame_;
  std::size_t l3_ = 0;       // offset of the IP header
  std::size_t l4_ = 0;       // offset of the TCP header
  std::size_t headers_ = 0;  // bytes of all headers (offset of the payload)
  std::size_t mss_ = 0;
  std::size_t segments_ = 0;
  bool ipv6_ = false;
};

}  // namespace vswitch::endpoints::virtio
