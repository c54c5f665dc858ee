// Software checksum completion and TCP segmentation for a guest that did not negotiate
// GUEST_CSUM / GUEST_TSO. Every produced frame is checked with an independent RFC 1071
// implementation written here, not with the code under test.
#include "endpoints/virtio/net_offload.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "tests/support/bytes.hpp"

namespace virtio = vswitch::endpoints::virtio;

namespace {

using vswitch::test::Bytes;
using vswitch::test::get16;
using vswitch::test::get32;
using vswitch::test::put16;
using vswitch::test::put32;

// Plain RFC 1071: sum of 16-bit words, end-around carry, per byte pair.
std::uint32_t sum16(const Bytes& b, std::size_t from, std::size_t to, std::uint32_t acc = 0) {
  for (std::size_t i = from; i < to; i += 2) {
    const unsigned hi = std::to_integer<unsigned>(b[i]);
    const unsigned lo = i + 1 < to ? std::to_integer<unsigned>(b[i + 1]) : 0u;
    acc += (hi << 8) | lo;
    acc = (acc & 0xffff) + (acc >> 16);
  }
  return acc;
}
std::uint16_t pseudo_sum(const Bytes& f, std::size_t l3, bool v6, std::uint8_t proto, std::size_t l4_len) {
  std::uint32_t acc = v6 ? sum16(f, l3 + 8, l3 + 40) : sum16(f, l3 + 12, l3 + 20);
  acc += proto;
  acc += static_cast<std::uint32_t>(l4_len);
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<std::uint16_t>(acc);
}
// A checksum over pseudo header + L4 is right when everything sums to 0xffff.
bool l4_checksum_ok(const Bytes& f, std::size_t l3, std::size_t l4, bool v6, std::uint8_t proto) {
  std::uint32_t acc = sum16(f, l4, f.size(), pseudo_sum(f, l3, v6, proto, f.size() - l4));
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return acc == 0xffff;
}
bool ipv4_header_ok(const Bytes& f, std::size_t l3, std::size_t ihl) { return sum16(f, l3, l3 + ihl) == 0xffff; }

struct TcpFrame {
  Bytes bytes;
  std::size_t l3, l4, payload_at;
};

// Ethernet (+ optional VLAN) / IPv4 or IPv6 / TCP with `payload` bytes, like a TSO sender
// hands it: lengths for the whole frame, the TCP checksum field holding the pseudo sum.
TcpFrame tcp_frame(bool v6, bool vlan, std::size_t payload, std::uint8_t flags, std::size_t ip_options = 0) {
  TcpFrame t;
  const std::size_t l2 = vlan ? 18 : 14;
  const std::size_t ihl = v6 ? 40 : 20 + ip_options;
  t.l3 = l2;
  t.l4 = l2 + ihl;
  t.payload_at = t.l4 + 32;  // TCP header with 12 bytes of options (timestamps)
  Bytes& b = t.bytes;
  b.assign(t.payload_at + payload, std::byte{0});
  for (std::size_t i = 0; i < 6; ++i) b[i] = std::byte{0x52};
  for (std::size_t i = 6; i < 12; ++i) b[i] = std::byte{0x02};
  if (vlan) {
    put16(b, 12, 0x8100);
    put16(b, 14, 42);
  }
  put16(b, l2 - 2, v6 ? 0x86dd : 0x0800);
  if (v6) {
    b[t.l3] = std::byte{0x60};
    put16(b, t.l3 + 4, static_cast<std::uint16_t>(32 + payload));
    b[t.l3 + 6] = std::byte{6};
    b[t.l3 + 7] = std::byte{64};
    for (std::size_t i = 0; i < 32; ++i) b[t.l3 + 8 + i] = static_cast<std::byte>(0x20 + i);
  } else {
    b[t.l3] = static_cast<std::byte>(0x40 | (ihl / 4));
    put16(b, t.l3 + 2, static_cast<std::uint16_t>(ihl + 32 + payload));
    put16(b, t.l3 + 4, 0xfffe);  // identification: wraps during segmentation
    put16(b, t.l3 + 6, 0x4000);  // DF
    b[t.l3 + 8] = std::byte{64};
    b[t.l3 + 9] = std::byte{6};
    put32(b, t.l3 + 12, 0x0a000001);
    put32(b, t.l3 + 16, 0x0a000002);
    for (std::size_t i = 0; i < ip_options; ++i) b[t.l3 + 20 + i] = std::byte{1};  // NOP options
  }
  put16(b, t.l4, 40000);
  put16(b, t.l4 + 2, 5201);
  put32(b, t.l4 + 4, 0xfffff000);  // sequence number: wraps during segmentation
  put32(b, t.l4 + 8, 12345);
  b[t.l4 + 12] = std::byte{0x80};  // data offset 8 words
  b[t.l4 + 13] = static_cast<std::byte>(flags);
  put16(b, t.l4 + 14, 512);
  for (std::size_t i = 0; i < payload; ++i) b[t.payload_at + i] = static_cast<std::byte>(i * 7 + 3);
  put16(b, t.l4 + 16, pseudo_sum(b, t.l3, v6, 6, 32 + payload));
  return t;
}

virtio::NetHeader gso_header(const TcpFrame& t, bool v6, std::uint16_t mss) {
  virtio::NetHeader h;
  h.flags = virtio::kNetHdrFlagNeedsCsum;
  h.gso_type = v6 ? virtio::kGsoTcpV6 : virtio::kGsoTcpV4;
  h.gso_size = mss;
  h.hdr_len = static_cast<std::uint16_t>(t.payload_at);
  h.csum_start = static_cast<std::uint16_t>(t.l4);
  h.csum_offset = 16;
  return h;
}

// Segments `t` and checks every property of every segment; returns the segments.
std::vector<Bytes> segment_and_check(const TcpFrame& t, bool v6, std::uint16_t mss) {
  const auto seg = virtio::TcpSegmenter::parse(gso_header(t, v6, mss), t.bytes, 1024);
  EXPECT_TRUE(seg);
  if (!seg) return {};
  const std::size_t payload = t.bytes.size() - t.payload_at;
  const std::size_t expect = payload == 0 ? 1 : (payload + mss - 1) / mss;
  EXPECT_EQ(seg->segments(), expect);
  std::vector<Bytes> out;
  Bytes joined;
  const std::uint8_t flags = std::to_integer<std::uint8_t>(t.bytes[t.l4 + 13]);
  for (std::size_t i = 0; i < seg->segments(); ++i) {
    Bytes s(seg->segment_bytes(i));
    EXPECT_EQ(seg->build(i, s), s.size());
    EXPECT_LE(s.size() - t.payload_at, mss);
    // Everything before the IP header is untouched.
    EXPECT_TRUE(std::equal(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(t.l3), t.bytes.begin()));
    if (v6) {
      EXPECT_EQ(get16(s, t.l3 + 4), s.size() - t.l4);
    } else {
      EXPECT_EQ(get16(s, t.l3 + 2), s.size() - t.l3);
      EXPECT_EQ(get16(s, t.l3 + 4), static_cast<std::uint16_t>(0xfffe + i));
      EXPECT_TRUE(ipv4_header_ok(s, t.l3, t.l4 - t.l3)) << "segment " << i;
    }
    EXPECT_EQ(get32(s, t.l4 + 4), static_cast<std::uint32_t>(0xfffff000u + i * mss));
    const std::uint8_t f = std::to_integer<std::uint8_t>(s[t.l4 + 13]);
    const bool last = i + 1 == seg->segments();
    EXPECT_EQ((f & 0x09) != 0, last && (flags & 0x09) != 0) << "FIN/PSH only on the last, segment " << i;
    EXPECT_EQ((f & 0x80) != 0, i == 0 && (flags & 0x80) != 0) << "CWR only on the first, segment " << i;
    EXPECT_EQ(f & 0x10, flags & 0x10) << "ACK kept";
    EXPECT_TRUE(l4_checksum_ok(s, t.l3, t.l4, v6, 6)) << "segment " << i;
    joined.insert(joined.end(), s.begin() + static_cast<std::ptrdiff_t>(t.payload_at), s.end());
    out.push_back(std::move(s));
  }
  EXPECT_TRUE(std::equal(joined.begin(), joined.end(), t.bytes.begin() + static_cast<std::ptrdiff_t>(t.payload_at),
                         t.bytes.end()))
      << "the segments' payloads, joined, are the original payload";
  EXPECT_EQ(joined.size(), payload);
  return out;
}

TEST(NetOffload, SegmentsTcpV4WithFlagsSequenceIdAndChecksums) {
  const auto t = tcp_frame(false, false, 5000, 0x80 | 0x10 | 0x08 | 0x01);  // CWR ACK PSH FIN
  EXPECT_EQ(segment_and_check(t, false, 1448).size(), 4u);
}

TEST(NetOffload, SegmentsA64KiBTcpV4FrameWithIpOptions) {
  const auto t = tcp_frame(false, false, 65000, 0x18, 8);
  EXPECT_EQ(segment_and_check(t, false, 1448).size(), 45u);
}

TEST(NetOffload, SegmentsTcpV6BehindAVlanTagWithAnOddLastSegment) {
  const auto t = tcp_frame(true, true, 3 * 1428 + 7, 0x18);
  EXPECT_EQ(segment_and_check(t, true, 1428).size(), 4u);
}

TEST(NetOffload, ExactMultipleAndEmptyPayload) {
  EXPECT_EQ(segment_and_check(tcp_frame(false, false, 2 * 1000, 0x10), false, 1000).size(), 2u);
  EXPECT_EQ(segment_and_check(tcp_frame(false, false, 0, 0x11), false, 1000).size(), 1u);
}

TEST(NetOffload, RefusesWhatItCannotSegment) {
  auto t = tcp_frame(false, false, 3000, 0x10);
  auto h = gso_header(t, false, 1000);
  h.gso_type = virtio::kGsoUdp;
  EXPECT_EQ(virtio::TcpSegmenter::parse(h, t.bytes, 1024).error(), virtio::OffloadError::kNotTcp);
  // gso_type says IPv6, the frame is IPv4.
  EXPECT_EQ(virtio::TcpSegmenter::parse(gso_header(t, true, 1000), t.bytes, 1024).error(),
            virtio::OffloadError::kUnparsable);
  // Too many segments for the limit (a tiny gso_size must not amplify without bound).
  EXPECT_EQ(virtio::TcpSegmenter::parse(gso_header(t, false, 1), t.bytes, 1024).error(),
            virtio::OffloadError::kTooManySegments);
  // Not TCP.
  auto u = t;
  u.bytes[u.l3 + 9] = std::byte{17};
  EXPECT_EQ(virtio::TcpSegmenter::parse(gso_header(u, false, 1000), u.bytes, 1024).error(),
            virtio::OffloadError::kUnparsable);
  // IPv6 with an extension header (hop-by-hop).
  auto v = tcp_frame(true, false, 3000, 0x10);
  v.bytes[v.l3 + 6] = std::byte{0};
  EXPECT_EQ(virtio::TcpSegmenter::parse(gso_header(v, true, 1000), v.bytes, 1024).error(),
            virtio::OffloadError::kUnparsable);
  // Truncated anywhere in the headers: never parsed, never read past the end.
  for (std::size_t cut = 0; cut < t.payload_at; ++cut) {
    const std::span<const std::byte> part(t.bytes.data(), cut);
    EXPECT_FALSE(virtio::TcpSegmenter::parse(gso_header(t, false, 1000), part, 1024)) << cut;
  }
  // An IHL that claims more than the frame holds.
  auto w = t;
  w.bytes[w.l3] = std::byte{0x4f};
  const std::span<const std::byte> short_frame(w.bytes.data(), w.l3 + 40);
  EXPECT_FALSE(virtio::TcpSegmenter::parse(gso_header(w, false, 1000), short_frame, 1024));
}

TEST(NetOffload, CompletesAPartialUdpChecksum) {
  // Ethernet / IPv4 / UDP, 333 payload bytes (odd), checksum field holding the pseudo sum.
  Bytes f(14 + 20 + 8 + 333, std::byte{0});
  put16(f, 12, 0x0800);
  f[14] = std::byte{0x45};
  f[14 + 9] = std::byte{17};
  put32(f, 14 + 12, 0xc0a80001);
  put32(f, 14 + 16, 0xc0a80002);
  put16(f, 34 + 4, 8 + 333);
  for (std::size_t i = 42; i < f.size(); ++i) f[i] = static_cast<std::byte>(i * 13);
  put16(f, 34 + 6, pseudo_sum(f, 14, false, 17, 8 + 333));
  virtio::NetHeader h;
  h.flags = virtio::kNetHdrFlagNeedsCsum;
  h.csum_start = 34;
  h.csum_offset = 6;
  virtio::complete_checksum(h, f);
  EXPECT_TRUE(l4_checksum_ok(f, 14, 34, false, 17));
  EXPECT_NE(get16(f, 34 + 6), 0) << "UDP: a computed 0 is sent as 0xffff";
}

// DATA_VALID given to header_for_driver() reaches a GUEST_CSUM driver (virtio 1.x 5.1.6.4:
// the device may set it). The switch never gives it one: a guest's own DATA_VALID is
// cleared on TX (check_tx_header, net_queues_test), and every record from another
// endpoint arrives without DATA_VALID and RSC_INFO (the endpoint loop clears both,
// endpoint_test).
TEST(NetOffload, HeaderForADriverWithoutGuestCsumCarriesNoFlags) {
  virtio::NetHeader h;
  h.flags = virtio::kNetHdrFlagDataValid | virtio::kNetHdrFlagRscInfo;
  h.csum_start = 34;
  h.csum_offset = 16;
  const auto without = virtio::header_for_driver(h, false);
  EXPECT_EQ(without.flags, 0) << "DATA_VALID only with GUEST_CSUM";
  EXPECT_EQ(without.csum_start, 0);
  const auto with = virtio::header_for_driver(h, true);
  EXPECT_EQ(with.flags, virtio::kNetHdrFlagDataValid) << "RSC_INFO is never handed on";
  EXPECT_EQ(with.csum_start, 34);
}

TEST(NetOffload, ChecksumHelpersMatchRfc1071Example) {
  // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2 (folded).
  const Bytes b = {std::byte{0x00}, std::byte{0x01}, std::byte{0xf2}, std::byte{0x03},
                   std::byte{0xf4}, std::byte{0xf5}, std::byte{0xf6}, std::byte{0xf7}};
  EXPECT_EQ(virtio::fold(virtio::ones_complement_add(0, b)), 0xddf2);
}

}  // namespace
