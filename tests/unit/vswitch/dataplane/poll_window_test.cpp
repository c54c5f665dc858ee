#include "vswitch/dataplane/poll_window.hpp"

#include <gtest/gtest.h>

namespace vswitch {
namespace {

TEST(PollWindow, OffSpinsOnlyTheFixedFloor) {
  PollWindow w(7'000, 0);
  for (int i = 0; i < 10; ++i) w.slept(1'000);
  EXPECT_EQ(w.window_ns(), 7'000u);
  EXPECT_EQ(w.grows(), 0u);
}

TEST(PollWindow, ShortSleepsGrowItUpToTheCeiling) {
  PollWindow w(0, 50'000);
  EXPECT_EQ(w.window_ns(), 0u);  // nothing learned: an endpoint that never worked never spins
  w.slept(30'000);
  EXPECT_EQ(w.window_ns(), PollWindow::kStartNs);
  w.slept(30'000);
  EXPECT_EQ(w.window_ns(), 2 * PollWindow::kStartNs);
  for (int i = 0; i < 20; ++i) w.slept(50'000);  // exactly the ceiling still counts as short
  EXPECT_EQ(w.window_ns(), 50'000u);
}

TEST(PollWindow, LongSleepsShrinkItSlowlyThenToZero) {
  PollWindow w(0, 50'000);
  for (int i = 0; i < 10; ++i) w.slept(1'000);
  ASSERT_EQ(w.window_ns(), 50'000u);
  w.slept(50'001);  // a sleep no spin within the ceiling would have avoided
  EXPECT_EQ(w.window_ns(), 50'000u - 50'000u / 8);
  // One short sleep after a quiet gap doubles it back: bursts keep their window.
  w.slept(10'000);
  EXPECT_EQ(w.window_ns(), 50'000u);
  // Idle: heartbeat-long sleeps take it to zero, not below the start and stuck there.
  int sleeps = 0;
  while (w.window_ns() != 0 && sleeps < 100) {
    w.slept(2'500'000'000);
    ++sleeps;
  }
  EXPECT_EQ(w.window_ns(), 0u);
  EXPECT_LT(sleeps, 40);
  const auto shrinks = w.shrinks();
  w.slept(2'500'000'000);  // nothing left to shrink: not counted
  EXPECT_EQ(w.shrinks(), shrinks);
}

TEST(PollWindow, TheFixedFloorStaysUnderALearnedWindow) {
  PollWindow w(10'000, 40'000);
  w.slept(100'000'000);
  EXPECT_EQ(w.window_ns(), 10'000u);
  for (int i = 0; i < 10; ++i) w.slept(5'000);
  EXPECT_EQ(w.window_ns(), 40'000u);
}

}  // namespace
}  // namespace vswitch
