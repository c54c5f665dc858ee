#include "vswitch/dataplane/delivery_journal.hpp"

#include <gtest/gtest.h>

#include <array>

namespace vswitch {
namespace {

TEST(DeliveryJournal, NothingWrittenReadsAsNothing) {
  std::array<std::uint64_t, kDeliveryJournalWords> words{};
  EXPECT_FALSE(DeliveryJournal(words).read().has_value());
}

TEST(DeliveryJournal, TheLastCompleteCommitIsRead) {
  std::array<std::uint64_t, kDeliveryJournalWords> words{};
  DeliveryJournal j(words);
  j.begin(std::uint16_t{7});
  j.tail(1, 4096);
  j.tail(3, 80);
  j.end();
  auto m = DeliveryJournal(words).read();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->used, std::optional<std::uint16_t>(7));
  EXPECT_EQ(m->tails[1], 4096u);
  EXPECT_EQ(m->tails[3], 80u);
  j.begin(std::nullopt);  // no guest queue: no mark
  j.tail(1, 8192);
  j.end();
  m = DeliveryJournal(words).read();
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->used.has_value());
  EXPECT_EQ(m->tails[1], 8192u);
}

// A writer killed in the middle of a commit (begin() without end()) leaves the previous
// commit readable, whole; a successor's journal (built on the same words) goes on after
// the last complete one, and its first commit does not overwrite that one.
TEST(DeliveryJournal, ACommitKilledMidwayLeavesThePreviousOne) {
  std::array<std::uint64_t, kDeliveryJournalWords> words{};
  {
    DeliveryJournal j(words);
    for (std::uint16_t k = 1; k <= 3; ++k) {
      j.begin(k);
      j.tail(2, std::uint64_t{100} * k);
      j.end();
    }
    j.begin(std::uint16_t{4});
    j.tail(2, 999);  // killed here
  }
  auto m = DeliveryJournal(words).read();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->used, std::optional<std::uint16_t>(3));
  EXPECT_EQ(m->tails[2], 300u);
  DeliveryJournal successor(words);
  successor.begin(std::uint16_t{9});
  successor.tail(2, 500);  // killed again, in its first commit
  m = DeliveryJournal(words).read();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->used, std::optional<std::uint16_t>(3)) << "the torn slot was written, not the complete one";
  successor.end();
  m = DeliveryJournal(words).read();
  EXPECT_EQ(m->used, std::optional<std::uint16_t>(9));
  EXPECT_EQ(m->tails[2], 500u);
}

// A slot whose sequence word a broken predecessor left near 2^64 is never taken for a
// commit, and does not outrank the commits written after it.
TEST(DeliveryJournal, AnImplausibleSequenceIsIgnored) {
  std::array<std::uint64_t, kDeliveryJournalWords> words{};
  words[0] = ~std::uint64_t{0} - 1;  // even, huge
  words[1] = (std::uint64_t{1} << 16) | 5;
  EXPECT_FALSE(DeliveryJournal(words).read().has_value());
  DeliveryJournal j(words);
  j.begin(std::uint16_t{6});
  j.end();
  const auto m = DeliveryJournal(words).read();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->used, std::optional<std::uint16_t>(6));
}

}  // namespace
}  // namespace vswitch
