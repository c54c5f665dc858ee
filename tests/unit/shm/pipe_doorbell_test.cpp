// The doorbell between endpoint processes: a pipe whose ringers hold only the write end.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include <gtest/gtest.h>

#include "shm/doorbell.hpp"

namespace vswitch::shm {
namespace {

TEST(PipeDoorbell, BothEndsAreNonBlocking) {
  auto bell = PipeDoorbell::create();
  ASSERT_TRUE(bell);
  for (const int fd : {bell.value().read_fd(), bell.value().write_fd()}) {
    const int flags = ::fcntl(fd, F_GETFL);
    ASSERT_GE(flags, 0);
    EXPECT_NE(flags & O_NONBLOCK, 0);
  }
}

// What a ringer holds cannot take a wakeup away from the owner: the write end refuses
// to be read (with an eventfd, any holder could read the counter empty).
TEST(PipeDoorbell, ARingerCannotDrainIt) {
  auto bell = PipeDoorbell::create();
  ASSERT_TRUE(bell);
  bell.value().ring();
  std::array<char, 64> buf{};
  EXPECT_EQ(::read(bell.value().write_fd(), buf.data(), buf.size()), -1);
  EXPECT_EQ(errno, EBADF);
  // The wakeup is still there for the owner, once; then it is drained.
  auto first = drain_doorbell(bell.value().read_fd());
  ASSERT_TRUE(first);
  EXPECT_TRUE(first.value());
  auto second = drain_doorbell(bell.value().read_fd());
  ASSERT_TRUE(second);
  EXPECT_FALSE(second.value());
}

// A ringer (or a hostile peer) that fills the pipe cannot make the next ring block, and one
// drain empties it. The rings run in a child with an alarm as the bound, so a regression
// fails this test (the child dies of SIGALRM) instead of hanging the suite.
TEST(PipeDoorbell, RingingAFullPipeNeverBlocksAndOneDrainEmptiesIt) {
  auto bell = PipeDoorbell::create();
  ASSERT_TRUE(bell);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(10);
    for (int i = 0; i < 100000; ++i) bell.value().ring();  // far more than a page
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status)) << "a ring blocked (killed by signal " << WTERMSIG(status) << ")";
  const int size = ::fcntl(bell.value().read_fd(), F_GETPIPE_SZ);
  ASSERT_GT(size, 0);
  if (size <= 4096) {
    auto d = drain_doorbell(bell.value().read_fd());
    ASSERT_TRUE(d);
    EXPECT_TRUE(d.value());
    auto again = drain_doorbell(bell.value().read_fd());
    ASSERT_TRUE(again);
    EXPECT_FALSE(again.value()) << "one read of a page left rings behind";
  }
}

// Without its write end (the owner's own process) a ring does nothing and reports nothing.
TEST(PipeDoorbell, RingWithoutTheWriteEndIsANoOp) {
  auto bell = PipeDoorbell::create();
  ASSERT_TRUE(bell);
  bell.value().close_write_end();
  bell.value().ring();
  EXPECT_EQ(bell.value().rings(), 0u);
}

// Every write end gone: the read end is at end of file and readable forever, so the owner
// must stop instead of spinning on it.
TEST(PipeDoorbell, DrainFailsWhenNoWriterIsLeft) {
  auto bell = PipeDoorbell::create();
  ASSERT_TRUE(bell);
  bell.value().close_write_end();
  EXPECT_FALSE(drain_doorbell(bell.value().read_fd()));
}

// The same drain works on an eventfd (the doorbells of in-process tests).
TEST(PipeDoorbell, DrainAlsoClearsAnEventFd) {
  auto bell = EventFdDoorbell::create();
  ASSERT_TRUE(bell);
  bell.value().ring();
  bell.value().ring();
  auto d = drain_doorbell(bell.value().fd());
  ASSERT_TRUE(d);
  EXPECT_TRUE(d.value());
  auto again = drain_doorbell(bell.value().fd());
  ASSERT_TRUE(again);
  EXPECT_FALSE(again.value());
}

}  // namespace
}  // namespace vswitch::shm
