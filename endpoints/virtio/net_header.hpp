// The virtio-net header (virtio 1.x, 5.1.6: struct virtio_net_hdr with num_buffers, 12
// bytes, little-endian) that travels in front of every frame: from a guest's TX chain, a
// TAP device with IFF_VNET_HDR, or a generator, through a channel record, to the
// receiver. It carries the checksum and segmentation offload metadata that lets a 64 KiB
// TCP segment cross the switch as one record.
//
// Untrusted: parse() copies the 12 bytes once into a NetHeader and validates it against
// the frame it describes; only a validated header (a CheckedNetHeader, which only parse()
// makes) is ever handed to a receiver.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "shm/sys/result.hpp"

namespace vswitch::endpoints::virtio {

inline constexpr std::size_t kNetHeaderBytes = 12;

// Virtio 1.x structures are little-endian ("le16", "le32", "le64": 1.4, "Structure
// Specifications"); the device reads and writes them, and the descriptor table, with
// native loads and stores, which is right only on a little-endian host.
static_assert(std::endian::native == std::endian::little, "the virtio device code assumes a little-endian host");

inline constexpr std::uint8_t kNetHdrFlagNeedsCsum = 1;
inline constexpr std::uint8_t kNetHdrFlagDataValid = 2;
inline constexpr std::uint8_t kNetHdrFlagRscInfo = 4;

inline constexpr std::uint8_t kGsoNone = 0;
inline constexpr std::uint8_t kGsoTcpV4 = 1;
inline constexpr std::uint8_t kGsoUdp = 3;
inline constexpr std::uint8_t kGsoTcpV6 = 4;
inline constexpr std::uint8_t kGsoUdpL4 = 5;
inline constexpr std::uint8_t kGsoEcn = 0x80;
// Where gso_type lies in the encoded header (its second byte).
inline constexpr std::size_t kNetHeaderGsoTypeOffset = 1;
// Whether a frame is to be segmented (a gso_type other than NONE, with or without ECN).
[[nodiscard]] constexpr bool is_gso(std::uint8_t gso_type) noexcept {
  return (gso_type & static_cast<std::uint8_t>(~kGsoEcn)) != kGsoNone;
}

struct NetHeader {
  std::uint8_t flags = 0;
  std::uint8_t gso_type = kGsoNone;
  std::uint16_t hdr_len = 0;
  std::uint16_t gso_size = 0;
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;
  std::uint16_t num_buffers = 0;
};

enum class NetHeaderError : std::uint8_t {
  kTruncated,          // fewer than 12 bytes
  kUnknownFlags,       // flag bits beyond NEEDS_CSUM | DATA_VALID | RSC_INFO
  kUnknownGsoType,
  kGsoWithoutSize,     // segmentation asked for with gso_size == 0
  kGsoWithoutCsum,     // segmentation without NEEDS_CSUM (Linux rejects it too)
  kCsumOutOfFrame,     // csum_start + csum_offset + 2 beyond the frame
};
std::string_view to_string(NetHeaderError e);

class CheckedNetHeader;
// Decodes and validates the header at the front of `bytes`; the frame is what follows it.
[[nodiscard]] sys::Result<CheckedNetHeader, NetHeaderError> parse(std::span<const std::byte> bytes);

// A header parse() validated against its frame. Only parse() makes one, so what takes it
// (a frontend's deliver()) cannot be handed twelve bytes nobody checked; it cannot be
// changed after the check either.
class CheckedNetHeader {
 public:
  [[nodiscard]] const NetHeader& get() const noexcept { return header_; }
  const NetHeader* operator->() const noexcept { return &header_; }
  // The same header without DATA_VALID and RSC_INFO, the flags only a device sets on its
  // way to a driver (virtio 1.x 5.1.6.2.1, 5.1.6.4): a header that came from another
  // endpoint may not tell a receiver its frame's checksum was verified or that it was
  // coalesced. Still valid for its frame: parse() accepts a header with fewer flags
  // wherever it accepts one with more (NEEDS_CSUM, the only flag it checks, is kept).
  // num_buffers is zeroed too: the device fills it in on its way to a driver, and between
  // switch ports it carries something else (the frame's VLAN).
  [[nodiscard]] CheckedNetHeader without_receive_only_flags() const noexcept {
    NetHeader h = header_;
    h.flags = static_cast<std::uint8_t>(h.flags & ~(kNetHdrFlagDataValid | kNetHdrFlagRscInfo));
    h.num_buffers = 0;
    return CheckedNetHeader(h);
  }

 private:
  friend sys::Result<CheckedNetHeader, NetHeaderError> parse(std::span<const std::byte> bytes);
  explicit CheckedNetHeader(const NetHeader& h) noexcept : header_(h) {}
  NetHeader header_;
};
// Encodes `h` little-endian into the 12 bytes at `out` (which must hold them).
void write(const NetHeader& h, std::span<std::byte, kNetHeaderBytes> out) noexcept;

}  // namespace vswitch::endpoints::virtio
