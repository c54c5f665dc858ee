#include "endpoints/virtio/net_offload.hpp"

#include <algorithm>
#include <cstring>

namespace vswitch::endpoints::virtio {

namespace {

constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
constexpr std::uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr std::uint16_t kEtherTypeVlan = 0x8100;
constexpr std::uint8_t kIpProtoTcp = 6;
constexpr std::uint8_t kTcpFin = 0x01;
constexpr std::uint8_t kTcpPsh = 0x08;
constexpr std::uint8_t kTcpCwr = 0x80;

std::uint16_t be16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) | std::to_integer<unsigned>(p[1]));
}
std::uint32_t be32(const std::byte* p) noexcept {
  return (std::uint32_t{be16(p)} << 16) | be16(p + 2);
}
void put_be16(std::byte* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::byte>(v >> 8);
  p[1] = static_cast<std::byte>(v & 0xff);
}
void put_be32(std::byte* p, std::uint32_t v) noexcept {
  put_be16(p, static_cast<std::uint16_t>(v >> 16));
  put_be16(p + 2, static_cast<std::uint16_t>(v & 0xffff));
}

}  // namespace

std::string_view to_string(OffloadError e) {
  switch (e) {
    case OffloadError::kNotTcp: return "segmentation offload other than TCP";
    case OffloadError::kUnparsable: return "headers of a GSO frame cannot be parsed";
    case OffloadError::kTooManySegments: return "too many segments";
    case OffloadError::kCount: break;
  }
  return "unknown";
}

std::uint64_t ones_complement_add(std::uint64_t sum, std::span<const std::byte> bytes) noexcept {
  std::size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) sum += be16(bytes.data() + i);
  if (i < bytes.size()) sum += std::uint64_t{std::to_integer<unsigned>(bytes[i])} << 8;  // odd byte, zero-padded
  return sum;
}

std::uint16_t fold(std::uint64_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

NetHeader header_for_driver(const NetHeader& h, bool guest_csum) noexcept {
  NetHeader out = h;
  out.flags = guest_csum ? static_cast<std::uint8_t>(h.flags & (kNetHdrFlagNeedsCsum | kNetHdrFlagDataValid)) : 0;
  if (!guest_csum) {
    out.csum_start = 0;
    out.csum_offset = 0;
  }
  return out;
}

void complete_checksum(const NetHeader& h, std::span<std::byte> frame) noexcept {
  const std::size_t field = std::size_t{h.csum_start} + h.csum_offset;
  if (field + 2 > frame.size()) return;  // parse() guarantees it; never write out of range
  const std::uint16_t sum = static_cast<std::uint16_t>(~fold(ones_complement_add(0, frame.subspan(h.csum_start))));
  put_be16(frame.data() + field, sum == 0 ? 0xffff : sum);
}

sys::Result<TcpSegmenter, OffloadError> TcpSegmenter::parse(const NetHeader& h, std::span<const std::byte> frame,
                                                            std::size_t max_segments) {
  using sys::Unexpected;
  const std::uint8_t gso = static_cast<std::uint8_t>(h.gso_type & ~kGsoEcn);
  if (gso != kGsoTcpV4 && gso != kGsoTcpV6) return Unexpected{OffloadError::kNotTcp};
  if (h.gso_size == 0) return Unexpected{OffloadError::kUnparsable};
  TcpSegmenter s;
  s.frame_ = frame;
  if (frame.size() < 14) return Unexpected{OffloadError::kUnparsable};
  std::size_t l3 = 14;
  std::uint16_t type = be16(frame.data() + 12);
  if (type == kEtherTypeVlan) {
    if (frame.size() < 18) return Unexpected{OffloadError::kUnparsable};
    type = be16(frame.data() + 16);
    l3 = 18;
  }
  std::size_t l4 = 0;
  if (type == kEtherTypeIpv4) {
    if (gso != kGsoTcpV4 || frame.size() < l3 + 20) return Unexpected{OffloadError::kUnparsable};
    const unsigned vihl = std::to_integer<unsigned>(frame[l3]);
    const std::size_t ihl = std::size_t{vihl & 0xfu} * 4;  // IHL counts 32-bit words
    if ((vihl >> 4) != 4 || ihl < 20 || frame.size() < l3 + ihl) return Unexpected{OffloadError::kUnparsable};
    if (std::to_integer<std::uint8_t>(frame[l3 + 9]) != kIpProtoTcp) return Unexpected{OffloadError::kUnparsable};
    l4 = l3 + ihl;
  } else if (type == kEtherTypeIpv6) {
    if (gso != kGsoTcpV6 || frame.size() < l3 + 40) return Unexpected{OffloadError::kUnparsable};
    if ((std::to_integer<unsigned>(frame[l3]) >> 4) != 6) return Unexpected{OffloadError::kUnparsable};
    if (std::to_integer<std::uint8_t>(frame[l3 + 6]) != kIpProtoTcp) return Unexpected{OffloadError::kUnparsable};
    l4 = l3 + 40;
  } else {
    return Unexpected{OffloadError::kUnparsable};
  }
  if (frame.size() < l4 + 20) return Unexpected{OffloadError::kUnparsable};
  const std::size_t thl = std::size_t{std::to_integer<unsigned>(frame[l4 + 12]) >> 4} * 4;  // data offset, in words
  if (thl < 20 || frame.size() < l4 + thl) return Unexpected{OffloadError::kUnparsable};
  s.l3_ = l3;
  s.l4_ = l4;
  s.headers_ = l4 + thl;
  s.ipv6_ = type == kEtherTypeIpv6;
  s.mss_ = h.gso_size;
  const std::size_t payload = frame.size() - s.headers_;
  s.segments_ = payload == 0 ? 1 : (payload + s.mss_ - 1) / s.mss_;
  if (s.segments_ > max_segments) return Unexpected{OffloadError::kTooManySegments};
  return s;
}

std::size_t TcpSegmenter::segment_bytes(std::size_t i) const noexcept {
  const std::size_t payload = frame_.size() - headers_;
  const std::size_t first = i * mss_;
  return headers_ + (first >= payload ? 0 : std::min(mss_, payload - first));
}

std::size_t TcpSegmenter::build(std::size_t i, std::span<std::byte> out) const noexcept {
  const std::size_t n = segment_bytes(i);
  if (i >= segments_ || out.size() < n) return 0;
  const std::size_t chunk = n - headers_;
  std::memcpy(out.data(), frame_.data(), headers_);
  std::memcpy(out.data() + headers_, frame_.data() + headers_ + i * mss_, chunk);
  std::byte* ip = out.data() + l3_;
  std::byte* tcp = out.data() + l4_;
  const std::size_t tcp_len = n - l4_;
  std::uint64_t pseudo = 0;
  if (ipv6_) {
    put_be16(ip + 4, static_cast<std::uint16_t>(tcp_len));  // payload length (no extension headers)
    pseudo = ones_complement_add(0, std::span<const std::byte>(ip + 8, 32));  // source + destination
  } else {
    const std::size_t ihl = l4_ - l3_;
    put_be16(ip + 2, static_cast<std::uint16_t>(n - l3_));  // total length
    put_be16(ip + 4, static_cast<std::uint16_t>(be16(ip + 4) + i));  // identification, one per segment
    put_be16(ip + 10, 0);
    put_be16(ip + 10, static_cast<std::uint16_t>(~fold(ones_complement_add(0, std::span<const std::byte>(ip, ihl)))));
    pseudo = ones_complement_add(0, std::span<const std::byte>(ip + 12, 8));
  }
  pseudo += kIpProtoTcp;
  pseudo += tcp_len;  // < 2^16 + headers: ones_complement_add folds the carry later
  put_be32(tcp + 4, static_cast<std::uint32_t>(be32(tcp + 4) + i * mss_));  // sequence number (mod 2^32)
  std::uint8_t flags = std::to_integer<std::uint8_t>(tcp[13]);
  if (i + 1 < segments_) flags = static_cast<std::uint8_t>(flags & ~(kTcpFin | kTcpPsh));
  if (i > 0) flags = static_cast<std::uint8_t>(flags & ~kTcpCwr);
  tcp[13] = static_cast<std::byte>(flags);
  put_be16(tcp + 16, 0);
  const std::uint16_t sum =
      static_cast<std::uint16_t>(~fold(ones_complement_add(pseudo, std::span<const std::byte>(tcp, tcp_len))));
  put_be16(tcp + 16, sum);
  return n;
}

}  // namespace vswitch::endpoints::virtio
