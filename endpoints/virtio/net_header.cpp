#include "endpoints/virtio/net_header.hpp"

#include <cstring>

namespace vswitch::endpoints::virtio {

namespace {

std::uint16_t le16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) |
                                    (std::to_integer<unsigned>(p[1]) << 8));
}

void put_le16(std::byte* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::byte>(v & 0xff);
  p[1] = static_cast<std::byte>(v >> 8);
}

}  // namespace

std::string_view to_string(NetHeaderError e) {
  switch (e) {
    case NetHeaderError::kTruncated: return "virtio-net header truncated";
    case NetHeaderError::kUnknownFlags: return "unknown virtio-net header flags";
    case NetHeaderError::kUnknownGsoType: return "unknown gso_type";
    case NetHeaderError::kGsoWithoutSize: return "gso_type set with gso_size 0";
    case NetHeaderError::kGsoWithoutCsum: return "gso_type set without NEEDS_CSUM";
    case NetHeaderError::kCsumOutOfFrame: return "checksum offset beyond the frame";
  }
  return "unknown";
}

sys::Result<CheckedNetHeader, NetHeaderError> parse(std::span<const std::byte> bytes) {
  using sys::Unexpected;
  if (bytes.size() < kNetHeaderBytes) return Unexpected{NetHeaderError::kTruncated};
  std::byte raw[kNetHeaderBytes];
  std::memcpy(raw, bytes.data(), kNetHeaderBytes);  // read once
  NetHeader h;
  h.flags = std::to_integer<std::uint8_t>(raw[0]);
  h.gso_type = std::to_integer<std::uint8_t>(raw[1]);
  h.hdr_len = le16(raw + 2);
  h.gso_size = le16(raw + 4);
  h.csum_start = le16(raw + 6);
  h.csum_offset = le16(raw + 8);
  h.num_buffers = le16(raw + 10);
  const std::size_t frame_len = bytes.size() - kNetHeaderBytes;

  if ((h.flags & ~(kNetHdrFlagNeedsCsum | kNetHdrFlagDataValid | kNetHdrFlagRscInfo)) != 0)
    return Unexpected{NetHeaderError::kUnknownFlags};
  const std::uint8_t gso = static_cast<std::uint8_t>(h.gso_type & ~kGsoEcn);
  if (gso != kGsoNone && gso != kGsoTcpV4 && gso != kGsoUdp && gso != kGsoTcpV6 && gso != kGsoUdpL4)
    return Unexpected{NetHeaderError::kUnknownGsoType};
  if (gso == kGsoNone && h.gso_type != kGsoNone) return Unexpected{NetHeaderError::kUnknownGsoType};
  if (gso != kGsoNone) {
    if (h.gso_size == 0) return Unexpected{NetHeaderError::kGsoWithoutSize};
    if ((h.flags & kNetHdrFlagNeedsCsum) == 0) return Unexpected{NetHeaderError::kGsoWithoutCsum};
  }
  if ((h.flags & kNetHdrFlagNeedsCsum) != 0 &&
      std::size_t{h.csum_start} + h.csum_offset + 2 > frame_len)
    return Unexpected{NetHeaderError::kCsumOutOfFrame};
  return CheckedNetHeader(h);
}

void write(const NetHeader& h, std::span<std::byte, kNetHeaderBytes> out) noexcept {
  out[0] = static_cast<std::byte>(h.flags);
  out[1] = static_cast<std::byte>(h.gso_type);
  put_le16(out.data() + 2, h.hdr_len);
  put_le16(out.data() + 4, h.gso_size);
  put_le16(out.data() + 6, h.csum_start);
  put_le16(out.data() + 8, h.csum_offset);
  put_le16(out.data() + 10, h.num_buffers);
}

}  // namespace vswitch::endpoints::virtio
