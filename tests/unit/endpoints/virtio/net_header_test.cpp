#include "endpoints/virtio/net_header.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace vswitch::endpoints::virtio {
namespace {

std::vector<std::byte> frame_with(const NetHeader& h, std::size_t frame_len) {
  std::vector<std::byte> out(kNetHeaderBytes + frame_len);
  write(h, std::span<std::byte, kNetHeaderBytes>(out.data(), kNetHeaderBytes));
  return out;
}

TEST(NetHeader, RoundTripsEveryFieldLittleEndian) {
  NetHeader h{kNetHdrFlagNeedsCsum, kGsoTcpV4, 0x1234, 1448, 34, 16, 3};
  auto bytes = frame_with(h, 2000);
  EXPECT_EQ(std::to_integer<int>(bytes[2]), 0x34);  // hdr_len low byte first
  EXPECT_EQ(std::to_integer<int>(bytes[3]), 0x12);
  auto parsed = parse(bytes);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->get().flags, h.flags);
  EXPECT_EQ(parsed->get().gso_type, h.gso_type);
  EXPECT_EQ(parsed->get().hdr_len, h.hdr_len);
  EXPECT_EQ(parsed->get().gso_size, h.gso_size);
  EXPECT_EQ(parsed->get().csum_start, h.csum_start);
  EXPECT_EQ(parsed->get().csum_offset, h.csum_offset);
  EXPECT_EQ(parsed->get().num_buffers, h.num_buffers);
}

TEST(NetHeader, PlainFrameIsValid) {
  EXPECT_TRUE(parse(frame_with(NetHeader{}, 60)).has_value());
}

TEST(NetHeader, RejectsTruncated) {
  std::vector<std::byte> b(11);
  EXPECT_EQ(parse(b).error(), NetHeaderError::kTruncated);
}

TEST(NetHeader, RejectsUnknownFlags) {
  NetHeader h;
  h.flags = 0x10;
  EXPECT_EQ(parse(frame_with(h, 60)).error(), NetHeaderError::kUnknownFlags);
}

TEST(NetHeader, RejectsUnknownGsoType) {
  NetHeader h{kNetHdrFlagNeedsCsum, 2, 0, 1000, 0, 0, 0};
  EXPECT_EQ(parse(frame_with(h, 60)).error(), NetHeaderError::kUnknownGsoType);
  h.gso_type = kGsoEcn;  // ECN without a segmentation type
  EXPECT_EQ(parse(frame_with(h, 60)).error(), NetHeaderError::kUnknownGsoType);
}

TEST(NetHeader, AcceptsEcnOnTcp) {
  NetHeader h{kNetHdrFlagNeedsCsum, kGsoTcpV6 | kGsoEcn, 74, 1428, 54, 16, 0};
  EXPECT_TRUE(parse(frame_with(h, 65000)).has_value());
}

TEST(NetHeader, RejectsGsoWithoutSizeOrChecksum) {
  NetHeader h{kNetHdrFlagNeedsCsum, kGsoTcpV4, 54, 0, 34, 16, 0};
  EXPECT_EQ(parse(frame_with(h, 3000)).error(), NetHeaderError::kGsoWithoutSize);
  h = NetHeader{0, kGsoTcpV4, 54, 1448, 0, 0, 0};
  EXPECT_EQ(parse(frame_with(h, 3000)).error(), NetHeaderError::kGsoWithoutCsum);
}

TEST(NetHeader, RejectsChecksumBeyondTheFrame) {
  NetHeader h{kNetHdrFlagNeedsCsum, kGsoNone, 0, 0, 50, 9, 0};
  EXPECT_TRUE(parse(frame_with(h, 61)).has_value());          // 50 + 9 + 2 = 61: last two bytes
  EXPECT_EQ(parse(frame_with(h, 60)).error(), NetHeaderError::kCsumOutOfFrame);
  h.csum_start = 0xffff;
  h.csum_offset = 0xffff;  // no 16-bit overflow: the sum is computed wide
  EXPECT_EQ(parse(frame_with(h, 65536)).error(), NetHeaderError::kCsumOutOfFrame);
}

// What a peer's header may not carry to a receiver is cleared (and num_buffers, the
// device's to fill in); the rest, NEEDS_CSUM and its offsets included, is the header
// parse() validated.
TEST(NetHeader, WithoutReceiveOnlyFlagsClearsDataValidAndRscInfoOnly) {
  NetHeader h{kNetHdrFlagNeedsCsum | kNetHdrFlagDataValid | kNetHdrFlagRscInfo, kGsoTcpV4, 54, 1448, 34, 16, 1};
  auto parsed = parse(frame_with(h, 2000));
  ASSERT_TRUE(parsed.has_value());
  const NetHeader got = parsed->without_receive_only_flags().get();
  EXPECT_EQ(got.flags, kNetHdrFlagNeedsCsum);
  EXPECT_EQ(got.gso_type, h.gso_type);
  EXPECT_EQ(got.hdr_len, h.hdr_len);
  EXPECT_EQ(got.gso_size, h.gso_size);
  EXPECT_EQ(got.csum_start, h.csum_start);
  EXPECT_EQ(got.csum_offset, h.csum_offset);
  EXPECT_EQ(got.num_buffers, 0) << "between ports it carries the frame's VLAN";
  EXPECT_EQ(parsed->get().flags, h.flags) << "the original is left as it was";
  EXPECT_EQ(parsed->get().num_buffers, 1);
}

}  // namespace
}  // namespace vswitch::endpoints::virtio
