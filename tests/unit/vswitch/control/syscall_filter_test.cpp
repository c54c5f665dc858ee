// The endpoint's system call allow-list, installed for real in a child process (gtest's
// death tests fork one per statement): what a forwarding endpoint needs still works, and
// each thing a compromised endpoint would try first is refused with SIGSYS and named.
#include "vswitch/control/syscall_filter.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <linux/futex.h>
#include <linux/if_tun.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <cstring>
#include <string>

namespace vswitch {
namespace {

// Installs the filter as an endpoint does (after NO_NEW_PRIVS); a failure ends the child
// with status 3 and the reason on stderr.
void install(SyscallFilter mode) {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(3);
  if (auto st = restrict_system_calls(mode); !st) {
    std::fprintf(stderr, "install failed: %s\n", st.error().c_str());
    std::fflush(stderr);
    ::_exit(3);
  }
}

class SyscallFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    if (!syscall_filter_supported()) GTEST_SKIP() << "this build has no system call filter (a sanitizer build)";
    // qemu-user (the aarch64 run) emulates no seccomp: probe in a child.
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      (void)::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
      auto st = restrict_system_calls(SyscallFilter::kLog);
      ::_exit(st ? 0 : (st.error().find("Function not implemented") != std::string::npos ||
                        st.error().find("Invalid argument") != std::string::npos)
                           ? 4
                           : 5);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 4) GTEST_SKIP() << "this kernel (or emulator) takes no seccomp filter";
    ASSERT_EQ(WEXITSTATUS(status), 0) << "installing the filter failed";
  }
};

// Sends `fd` over the unix socket `sock` (SCM_RIGHTS), as a process hands a descriptor on.
void send_descriptor(int sock, int fd) {
  char byte = 'x';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  (void)::sendmsg(sock, &msg, 0);
}

std::string refused(long nr) { return "seccomp refused system call " + std::to_string(nr) + " "; }

TEST_F(SyscallFilterTest, WhatAForwardingEndpointDoesStillWorks) {
  EXPECT_EXIT(
      {
        int p[2];
        int bell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (::pipe2(p, O_CLOEXEC) != 0 || bell < 0) ::_exit(10);
        install(SyscallFilter::kEnforce);
        // Frames and doorbells on descriptors it holds.
        if (::write(p[1], "frame", 5) != 5) ::_exit(11);
        char buf[8];
        if (::read(p[0], buf, sizeof buf) != 5) ::_exit(12);
        std::uint64_t one = 1;
        if (::write(bell, &one, sizeof one) != 8 || ::read(bell, &one, sizeof one) != 8) ::_exit(13);
        // Memory: data mappings, the allocator.
        void* m = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || ::mprotect(m, 4096, PROT_READ) != 0 || ::munmap(m, 1 << 20) != 0) ::_exit(14);
        std::string big(8 << 20, 'x');
        // A mutex and a condition variable's timed wait (futex WAIT_BITSET / WAKE).
        std::mutex mu;
        std::condition_variable cv;
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait_for(lock, std::chrono::milliseconds(1));
        }
        cv.notify_one();
        // A kick fd made non-blocking, seals read.
        const int fl = ::fcntl(p[0], F_GETFL);
        if (fl < 0 || ::fcntl(p[0], F_SETFL, fl | O_NONBLOCK) != 0) ::_exit(15);
        if (::fcntl(p[0], F_GET_SEALS) >= 0 || errno != EINVAL) ::_exit(16);  // a pipe has none
        ::_exit(big.size() == (8u << 20) ? 0 : 17);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(SyscallFilterTest, OpeningAFileIsRefusedAndNamed) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        (void)::open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_openat));
}

TEST_F(SyscallFilterTest, NewSocketsAreRefused) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        (void)::socket(AF_INET, SOCK_STREAM, 0);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_socket));
}

TEST_F(SyscallFilterTest, ExecutableMemoryIsRefused) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        (void)::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_mmap));
  EXPECT_EXIT(
      {
        void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        install(SyscallFilter::kEnforce);
        (void)::mprotect(m, 4096, PROT_READ | PROT_EXEC);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_mprotect));
}

// A doorbell's open file is shared with the peers that ring it: making it blocking would
// stop them. O_NONBLOCK can be set, never cleared, by F_SETFL.
TEST_F(SyscallFilterTest, NothingCanBeMadeBlocking) {
  EXPECT_EXIT(
      {
        const int bell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        install(SyscallFilter::kEnforce);
        (void)::fcntl(bell, F_SETFL, 0);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_fcntl));
  EXPECT_EXIT(
      {
        const int bell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        install(SyscallFilter::kEnforce);
        int off = 0;
        (void)::ioctl(bell, FIONBIO, &off);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_ioctl));
}

// The one ioctl a TAP endpoint makes (vswitchctl link): TUNSETCARRIER passes the filter
// (on a descriptor that is no TAP the kernel answers ENOTTY); any other TUN command, e.g.
// TUNSETIFF to attach another device, is refused.
TEST_F(SyscallFilterTest, OnlyTheTapCarrierIoctlPasses) {
  EXPECT_EXIT(
      {
        const int bell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        install(SyscallFilter::kEnforce);
        int on = 1;
        ::_exit(::ioctl(bell, TUNSETCARRIER, &on) != 0 && errno == ENOTTY ? 0 : 20);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        const int bell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        install(SyscallFilter::kEnforce);
        char ifr[40] = {};
        (void)::ioctl(bell, TUNSETIFF, ifr);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_ioctl));
}

TEST_F(SyscallFilterTest, SignalsToOtherProcessesAndExecAreRefused) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        (void)::kill(::getppid(), 0);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_kill));
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        (void)::execl("/bin/true", "true", static_cast<char*>(nullptr));
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_execve));
}

// Descriptors never leave the process: an endpoint could otherwise hand a doorbell (an
// open file its peers share) to its VMM, which could make it blocking.
TEST_F(SyscallFilterTest, DescriptorsCannotBeSentOut) {
  EXPECT_EXIT(
      {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) ::_exit(10);
        const int bell = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        install(SyscallFilter::kEnforce);
        send_descriptor(sv[0], bell);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_sendmsg));
}

// A signal reaches only this process's own threads: abort() works; tgkill of another
// process (with a shared uid, vswitchd or another endpoint) is refused.
TEST_F(SyscallFilterTest, SignalsReachOnlyThisProcess) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        std::abort();
      },
      ::testing::KilledBySignal(SIGABRT), "");
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        (void)::syscall(SYS_tgkill, ::getppid(), ::getppid(), 0);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_tgkill));
}

// futex: the operations mutexes and condition variables use (exercised above), not the
// priority-inheritance ones.
TEST_F(SyscallFilterTest, OnlyPlainFutexOperations) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kEnforce);
        static std::uint32_t word = 0;
        (void)::syscall(SYS_futex, &word, FUTEX_LOCK_PI | FUTEX_PRIVATE_FLAG, 0, nullptr, nullptr, 0);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGSYS), refused(SYS_futex));
}

// "log": the call runs (the kernel logs it); the process lives.
TEST_F(SyscallFilterTest, LogModeLetsTheCallRun) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kLog);
        const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ::_exit(fd >= 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// Off installs nothing: the same call runs without any filter.
TEST_F(SyscallFilterTest, OffInstallsNothing) {
  EXPECT_EXIT(
      {
        install(SyscallFilter::kOff);
        (void)::socket(AF_INET, SOCK_STREAM, 0);
        ::_exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace vswitch
