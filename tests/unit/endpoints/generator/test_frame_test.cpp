#include "endpoints/generator/test_frame.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace vswitch::endpoints::generator {
namespace {

constexpr std::uint8_t kDst[6] = {0x02, 0, 0, 0, 0, 2};
constexpr std::uint8_t kSrc[6] = {0x02, 0, 0, 0, 0, 1};

TEST(TestFrame, RoundTripsAtEverySize) {
  for (std::size_t size : {std::size_t{60}, std::size_t{61}, std::size_t{1514}, std::size_t{9000}, kMaxFrame}) {
    std::vector<std::byte> f(size);
    ASSERT_TRUE(write_test_frame(f, kDst, kSrc, FrameId{7, 123456789012ULL}));
    auto id = check_test_frame(f);
    ASSERT_TRUE(id.has_value()) << size << ": " << to_string(id.error());
    EXPECT_EQ(id->stream, 7u);
    EXPECT_EQ(id->sequence, 123456789012ULL);
    EXPECT_EQ(std::to_integer<int>(f[12]), 0x88);
    EXPECT_EQ(std::to_integer<int>(f[13]), 0xB5);
  }
}

TEST(TestFrame, RefusesSizesOutOfRange) {
  std::vector<std::byte> small(59), big(kMaxFrame + 1);
  EXPECT_FALSE(write_test_frame(small, kDst, kSrc, {}));
  EXPECT_FALSE(write_test_frame(big, kDst, kSrc, {}));
}

TEST(TestFrame, EverySingleBitFlipIsDetected) {
  std::vector<std::byte> f(100);
  ASSERT_TRUE(write_test_frame(f, kDst, kSrc, FrameId{1, 42}));
  for (std::size_t byte = 0; byte < f.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      auto g = f;
      g[byte] ^= static_cast<std::byte>(1 << bit);
      EXPECT_FALSE(check_test_frame(g).has_value()) << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(TestFrame, NamesWhatIsWrong) {
  std::vector<std::byte> f(100);
  ASSERT_TRUE(write_test_frame(f, kDst, kSrc, FrameId{1, 42}));
  EXPECT_EQ(check_test_frame(std::span(f).first(20)).error(), FrameError::kTooShort);
  EXPECT_EQ(check_test_frame(std::span(f).first(99)).error(), FrameError::kBadLength);
  auto g = f;
  g[13] = std::byte{0};
  EXPECT_EQ(check_test_frame(g).error(), FrameError::kNotATestFrame);
  g = f;
  g[50] ^= std::byte{1};
  EXPECT_EQ(check_test_frame(g).error(), FrameError::kBadChecksum);
}

TEST(SequenceTracker, CountsGapsAndLateFrames) {
  SequenceTracker t;
  for (std::uint64_t s : {0ULL, 1ULL, 2ULL, 5ULL, 6ULL, 4ULL, 7ULL, 7ULL}) t.observe(s);
  EXPECT_EQ(t.received(), 8u);
  EXPECT_EQ(t.lost(), 2u);          // the gap 3..4 (4 then came late)
  EXPECT_EQ(t.out_of_order(), 2u);  // 4 late, 7 duplicated
  EXPECT_EQ(t.next_expected(), 8u);
}

}  // namespace
}  // namespace vswitch::endpoints::generator
