// The doorbell's eventfd against an owner that never reads it.
#include "shm/sys/eventfd.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

#include <gtest/gtest.h>

#include "shm/doorbell.hpp"

namespace vswitch::sys {
namespace {

// What a hostile or hung owner can do to its own doorbell: fill the counter to its
// maximum, 0xfffffffffffffffe (eventfd(2)), and never read it again.
void saturate(int fd) {
  const std::uint64_t most = 0xfffffffffffffffeULL;
  ASSERT_EQ(::write(fd, &most, sizeof most), static_cast<ssize_t>(sizeof most));
}

TEST(EventFd, IsNonBlocking) {
  auto e = EventFd::create();
  ASSERT_TRUE(e);
  const int flags = ::fcntl(e.value().fd(), F_GETFL);
  ASSERT_GE(flags, 0);
  EXPECT_NE(flags & O_NONBLOCK, 0);
}

// Ringing a saturated doorbell returns at once: the wakeup is pending anyway. On a
// blocking eventfd the write sleeps until the owner reads, that is forever. The ring runs
// in a child with an alarm as the bound, so a regression fails this test (the child dies
// of SIGALRM) instead of hanging the suite.
TEST(EventFd, RingingASaturatedDoorbellNeverBlocks) {
  auto bell = shm::EventFdDoorbell::create();
  ASSERT_TRUE(bell);
  saturate(bell.value().fd());
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(10);
    for (int i = 0; i < 3; ++i) bell.value().ring();
    // No gtest assertion in the child: a failed one would return into gtest's runner here.
    ::_exit(signal_counter(bell.value().fd()) ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status)) << "the ring blocked (killed by signal " << WTERMSIG(status) << ")";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // The owner still sees one pending wakeup and, after reading, an empty counter.
  EXPECT_TRUE(bell.value().wait(std::chrono::nanoseconds(0)));
  EXPECT_FALSE(bell.value().wait(std::chrono::nanoseconds(0)));
}

TEST(EventFd, UntimedWaitReturnsWhenRung) {
  auto e = EventFd::create();
  ASSERT_TRUE(e);
  e.value().signal();
  EXPECT_TRUE(e.value().wait());  // rung before the wait: returns at once
  EXPECT_EQ(e.value().drain(), 0u);
  e.value().signal();
  e.value().signal();
  EXPECT_EQ(e.value().drain(), 2u);
}

}  // namespace
}  // namespace vswitch::sys
