#include "endpoints/vhost_user/message.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <cstring>

namespace vswitch::endpoints::vhost_user {
namespace {

struct Raw {
  Header header;
  std::vector<std::byte> payload;
};

template <typename T>
Raw raw(Request r, const T& payload, std::uint32_t flags = kVersion) {
  Raw m{{static_cast<std::uint32_t>(r), flags, sizeof(T)}, std::vector<std::byte>(sizeof(T))};
  std::memcpy(m.payload.data(), &payload, sizeof(T));
  return m;
}
Raw raw_empty(Request r, std::uint32_t flags = kVersion) { return {{static_cast<std::uint32_t>(r), flags, 0}, {}}; }

std::vector<sys::Fd> fds(std::size_t n) {
  std::vector<sys::Fd> v;
  for (std::size_t i = 0; i < n; ++i) v.emplace_back(::eventfd(0, EFD_CLOEXEC));
  return v;
}

sys::Result<Message, MessageError> decode_raw(const Raw& m, std::vector<sys::Fd> f = {}) {
  return decode(m.header, m.payload, std::move(f));
}

MessageError error_of(const Raw& m, std::vector<sys::Fd> f = {}) {
  auto r = decode_raw(m, std::move(f));
  EXPECT_FALSE(r.has_value());
  return r.has_value() ? MessageError::kCount : r.error();
}

TEST(VhostUserMessage, ValidRequests) {
  auto f = decode_raw(raw_empty(Request::kGetFeatures));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->request, Request::kGetFeatures);

  auto s = decode_raw(raw(Request::kSetFeatures, std::uint64_t{0x1234}, kVersion | kFlagNeedReply));
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->need_reply);
  EXPECT_EQ(std::get<std::uint64_t>(s->payload), 0x1234u);

  auto n = decode_raw(raw(Request::kSetVringNum, VringState{1, 256}));
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(std::get<VringState>(n->payload).num, 256u);

  auto k = decode_raw(raw(Request::kSetVringKick, std::uint64_t{1}), fds(1));
  ASSERT_TRUE(k.has_value());
  EXPECT_TRUE(std::get<VringFile>(k->payload).has_fd);
  EXPECT_EQ(k->fds.size(), 1u);

  auto nofd = decode_raw(raw(Request::kSetVringCall, std::uint64_t{kVringNoFd | 0}));
  ASSERT_TRUE(nofd.has_value());
  EXPECT_FALSE(std::get<VringFile>(nofd->payload).has_fd);
}

struct Table {
  std::uint32_t n, pad;
  MemRegion r[2];
};

TEST(VhostUserMessage, MemTableWithOneFdPerRegion) {
  Table t{2, 0, {MemRegion{0, 0xa0000, 0x7f0000000000, 0}, MemRegion{0xc0000, 0x7ff40000, 0x7f00000c0000, 0xc0000}}};
  auto m = decode_raw(raw(Request::kSetMemTable, t), fds(2));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(std::get<MemTable>(m->payload).regions.size(), 2u);
  EXPECT_EQ(error_of(raw(Request::kSetMemTable, t), fds(1)), MessageError::kFdCount);
  EXPECT_EQ(error_of(raw(Request::kSetMemTable, t), fds(3)), MessageError::kFdCount);
  t.n = 9;
  EXPECT_EQ(error_of(raw(Request::kSetMemTable, t), fds(2)), MessageError::kRegionCount);
  t.n = 0;
  EXPECT_EQ(error_of(raw(Request::kSetMemTable, t)), MessageError::kRegionCount);
  t.n = 3;  // says 3, carries 2
  EXPECT_EQ(error_of(raw(Request::kSetMemTable, t), fds(3)), MessageError::kPayloadSize);
  t.n = 2;
  t.r[1].mmap_offset = ~std::uint64_t{0} - 10;  // offset + size wraps: CVE-2020-10722's class
  EXPECT_EQ(error_of(raw(Request::kSetMemTable, t), fds(2)), MessageError::kRegionRange);
  t.r[1].mmap_offset = 0;
  t.r[0].memory_size = 0;
  EXPECT_EQ(error_of(raw(Request::kSetMemTable, t), fds(2)), MessageError::kRegionRange);
}

TEST(VhostUserMessage, HeaderErrors) {
  EXPECT_EQ(error_of(raw_empty(Request::kGetFeatures, 2)), MessageError::kBadVersion);
  EXPECT_EQ(error_of(raw_empty(Request::kGetFeatures, kVersion | kFlagReply)), MessageError::kReplyFlag);
  Raw unknown{{999, kVersion, 0}, {}};
  EXPECT_EQ(error_of(unknown), MessageError::kUnknownRequest);
  EXPECT_EQ(error_of(raw(Request::kSetLogBase, std::uint64_t{0})), MessageError::kUnknownRequest);
  Raw big{{static_cast<std::uint32_t>(Request::kSetFeatures), kVersion, kMaxPayloadBytes + 1}, {}};
  EXPECT_EQ(error_of(big), MessageError::kPayloadTooLarge);
  Raw lying{{static_cast<std::uint32_t>(Request::kSetFeatures), kVersion, 8}, std::vector<std::byte>(4)};
  EXPECT_EQ(error_of(lying), MessageError::kPayloadSize);
  EXPECT_EQ(error_of(raw(Request::kSetFeatures, std::uint32_t{1})), MessageError::kPayloadSize);
  EXPECT_EQ(error_of(raw_empty(Request::kGetFeatures), fds(1)), MessageError::kFdCount);
}

TEST(VhostUserMessage, VringRanges) {
  EXPECT_EQ(error_of(raw(Request::kSetVringNum, VringState{2, 256})), MessageError::kVringIndex);
  EXPECT_EQ(error_of(raw(Request::kSetVringNum, VringState{0, 300})), MessageError::kVringNum);
  EXPECT_EQ(error_of(raw(Request::kSetVringNum, VringState{0, 65536})), MessageError::kVringNum);
  EXPECT_EQ(error_of(raw(Request::kSetVringBase, VringState{0, 70000})), MessageError::kVringNum);
  EXPECT_EQ(error_of(raw(Request::kSetVringEnable, VringState{0, 2})), MessageError::kVringNum);
  VringAddr a{};
  a.index = 7;
  EXPECT_EQ(error_of(raw(Request::kSetVringAddr, a)), MessageError::kVringIndex);
  // The index of SET_VRING_KICK is checked in full width: high bits are not silently cut
  // off (CVE-2020-10723's truncation).
  EXPECT_EQ(error_of(raw(Request::kSetVringKick, std::uint64_t{0x10000}), fds(1)), MessageError::kVringIndex);
  EXPECT_EQ(error_of(raw(Request::kSetVringKick, std::uint64_t{5}), fds(1)), MessageError::kVringIndex);
  EXPECT_EQ(error_of(raw(Request::kSetVringKick, std::uint64_t{kVringNoFd}), fds(1)), MessageError::kFdCount);
  EXPECT_EQ(error_of(raw(Request::kSetVringKick, std::uint64_t{0})), MessageError::kFdCount);
}

TEST(VhostUserMessage, DescriptorsOfARejectedMessageAreClosed) {
  auto f = fds(2);
  const int a = f[0].get(), b = f[1].get();
  EXPECT_EQ(error_of(raw_empty(Request::kGetFeatures), std::move(f)), MessageError::kFdCount);
  EXPECT_EQ(::fcntl(a, F_GETFD), -1);
  EXPECT_EQ(::fcntl(b, F_GETFD), -1);
}

TEST(VhostUserMessage, Replies) {
  const auto r = encode_reply(Request::kGetFeatures, std::uint64_t{0xabcdef});
  ASSERT_EQ(r.size(), kHeaderBytes + 8);
  Header h;
  std::memcpy(&h, r.data(), sizeof h);
  EXPECT_EQ(h.request, static_cast<std::uint32_t>(Request::kGetFeatures));
  EXPECT_EQ(h.flags, kVersion | kFlagReply);
  EXPECT_EQ(h.size, 8u);
  const auto s = encode_reply(Request::kGetVringBase, VringState{1, 42});
  EXPECT_EQ(s.size(), kHeaderBytes + 8);
}

}  // namespace
}  // namespace vswitch::endpoints::vhost_user
