#include "vswitch/observability/event_log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace vswitch {
namespace {

// stderr replaced by a pipe for the test's duration.
class StderrPipe {
 public:
  StderrPipe() {
    EXPECT_EQ(::pipe(fds_), 0);
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(fds_[1], STDERR_FILENO);
  }
  // Puts stderr back and closes the pipe's write ends: a reader then sees end of file.
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    ::close(fds_[1]);
    saved_ = -1;
  }
  ~StderrPipe() {
    restore();
    ::close(fds_[0]);
  }
  int read_end() const { return fds_[0]; }

 private:
  int fds_[2] = {-1, -1};
  int saved_ = -1;
};

TEST(EventLog, WritesEveryMessageInOrder) {
  StderrPipe pipe;
  {
    EventLog log("t: ");
    log.post("one");
    log.post("two");
    log.post("");  // refused: nothing to say
  }  // the destructor flushes
  char buf[256] = {};
  const ssize_t n = ::read(pipe.read_end(), buf, sizeof buf - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), "t: one\nt: two\n");
}

TEST(EventLog, AStderrNobodyReadsNeverBlocksThePoster) {
  StderrPipe pipe;
  ::fcntl(pipe.read_end(), F_SETPIPE_SZ, 4096);
  std::uint64_t dropped = 0;
  std::thread reader;
  {
    EventLog log("t: ");
    // The writer fills the 4 KiB pipe and blocks in write(); posting must go on regardless.
    const std::string m(200, 'x');
    for (int i = 0; i < 20'000; ++i) log.post(m);
    dropped = log.dropped();
    // Now let the writer finish so the destructor can join it.
    reader = std::thread([fd = pipe.read_end()] {
      char buf[65536];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
    });
  }
  EXPECT_GE(dropped, 20'000u - EventLog::kMaxPending - 64) << "a full backlog must drop, not wait";
  pipe.restore();
  reader.join();
}

}  // namespace
}  // namespace vswitch
