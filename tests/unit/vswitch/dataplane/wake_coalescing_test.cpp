#include "vswitch/dataplane/wake_coalescing.hpp"

#include <gtest/gtest.h>

namespace vswitch {
namespace {

// Makes `c` dense: kDenseAfter short gaps in a row.
void stream(WakeCoalescing& c, std::uint64_t gap_ns) {
  for (unsigned i = 0; i < WakeCoalescing::kDenseAfter; ++i) c.worked(gap_ns);
}

TEST(WakeCoalescing, OffNeverTimesASleep) {
  WakeCoalescing c(0);
  for (int i = 0; i < 10; ++i) {
    c.worked(1);
    EXPECT_FALSE(c.timed());
  }
}

TEST(WakeCoalescing, AStreamOfShortGapsStartsADenseSpellAndALoneExchangeDoesNot) {
  WakeCoalescing c(50'000);
  EXPECT_FALSE(c.timed()) << "an endpoint that never worked sleeps until woken";
  // A ping and its reply: one short gap after a long one.
  c.worked(1'000'000);
  c.worked(30'000);
  EXPECT_FALSE(c.timed());
  c.worked(1'000'000);  // the next request, a millisecond later: the count starts over
  for (unsigned i = 1; i < WakeCoalescing::kDenseAfter; ++i) {
    c.worked(50'000);  // exactly the period counts as short
    EXPECT_FALSE(c.timed()) << i;
  }
  c.worked(50'000);
  EXPECT_TRUE(c.timed());
  EXPECT_TRUE(c.timed()) << "asking again before sleeping changes nothing";
}

TEST(WakeCoalescing, ATimedSleepThatFindsWorkKeepsItAndOneThatFindsNoneEndsIt) {
  WakeCoalescing c(50'000);
  stream(c, 10'000);
  ASSERT_TRUE(c.timed());
  c.slept_timed();
  c.worked(80'000);  // the timer (and its slack) ran longer than the period: still dense
  EXPECT_TRUE(c.timed());
  c.slept_timed();
  // The pass after the timer found nothing: the next sleep waits to be woken.
  EXPECT_FALSE(c.timed());
  EXPECT_FALSE(c.dense());
  // And it takes a whole stream again to come back.
  c.worked(10'000);
  EXPECT_FALSE(c.timed());
  stream(c, 10'000);
  EXPECT_TRUE(c.timed());
}

TEST(WakeCoalescing, ALongGapEndsTheCountBeforeItIsDense) {
  WakeCoalescing c(50'000);
  for (int round = 0; round < 5; ++round) {
    for (unsigned i = 1; i < WakeCoalescing::kDenseAfter; ++i) c.worked(10'000);
    c.worked(60'000);
    EXPECT_FALSE(c.timed()) << round;
  }
}

}  // namespace
}  // namespace vswitch
