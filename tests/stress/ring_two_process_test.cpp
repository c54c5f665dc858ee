// Two processes over a named region: the parent produces, a forked child attaches the
// channel by name and consumes. At least 10 million records of random sizes between 60
// bytes and 64 KiB (log-uniform, so every order of magnitude is exercised), each carrying
// a sequence number and a checksum: none lost, none reordered, none corrupt. Both sides
// sleep through the handshake when they must; a watchdog fails the test if progress stops.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "shm/channel.hpp"
#include "shm/doorbell.hpp"
#include "tests/stress/stress_config.hpp"
#include "tests/support/checked_record.hpp"

namespace vswitch::shm {
namespace {

using vswitch::testing::Rng;

// Progress both processes report, in an anonymous shared mapping made before fork.
struct Shared {
  std::atomic<std::uint64_t> produced{0};
  std::atomic<std::uint64_t> consumed{0};
  std::atomic<std::uint64_t> consumer_sleeps{0};
  std::atomic<std::uint64_t> bytes{0};
  char failure[256]{};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

std::uint32_t log_uniform_size(Rng& rng, std::uint32_t lo, std::uint32_t hi) {
  const std::uint64_t r = rng.below(1000);
  if (r == 0) return lo;  // the edges, explicitly
  if (r == 1) return hi;
  const double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
  const double v = std::exp(std::log(lo) + u * (std::log(hi) - std::log(lo)));
  return std::min(hi, std::max(lo, static_cast<std::uint32_t>(v)));
}

constexpr std::uint32_t kMinRecord = 60;
constexpr std::uint32_t kMaxRecord = 65536;

int run_consumer(const std::string& name, std::uint64_t records, EventFdDoorbell& my_bell,
                 EventFdDoorbell& producer_bell, Shared* shared) {
  auto ch = Channel::attach(name);
  if (!ch) {
    std::snprintf(shared->failure, sizeof shared->failure, "attach: %s", ch.error().c_str());
    return 2;
  }
  FrameConsumer c = ch->consumer(&producer_bell);
  std::uint64_t expect = 0, bytes = 0, since_release = 0;
  while (expect < records) {
    PopResult r = c.peek_or_arm();
    if (r.status == Pop::kEmpty) {
      shared->consumer_sleeps.fetch_add(1, std::memory_order_relaxed);
      my_bell.wait();
      continue;
    }
    if (r.status == Pop::kCorrupt) {
      std::snprintf(shared->failure, sizeof shared->failure, "corrupt ring at record %llu: %s",
                    static_cast<unsigned long long>(expect), std::string(to_string(r.error)).c_str());
      return 3;
    }
    std::uint64_t seq = 0;
    const auto check = vswitch::testing::check_record(r.payload, seq);
    if (check != vswitch::testing::RecordCheck::kOk || seq != expect) {
      std::snprintf(shared->failure, sizeof shared->failure,
                    "record %llu: got seq %llu, size %zu, check %d (0 ok, 2 length, 3 checksum)",
                    static_cast<unsigned long long>(expect), static_cast<unsigned long long>(seq),
                    r.payload.size(), static_cast<int>(check));
      return 4;
    }
    bytes += r.payload.size();
    c.consume();
    ++expect;
    if (++since_release == 16) {
      c.release();
      since_release = 0;
      shared->consumed.store(expect, std::memory_order_relaxed);
    }
  }
  c.release();
  shared->consumed.store(expect, std::memory_order_relaxed);
  shared->bytes.store(bytes, std::memory_order_relaxed);
  return 0;
}

TEST(RingTwoProcess, TenMillionRandomSizedRecordsArriveIntactAndInOrder) {
  const std::uint64_t records = vswitch::testing::scaled(10'000'000);
  const std::string name = "/vswitch-test." + std::to_string(::getpid()) + ".twoproc";
  auto ch = Channel::create(ChannelSpec{name, 1 << 20, kMaxRecord, 1});
  ASSERT_TRUE(ch.has_value()) << ch.error();
  auto consumer_bell = EventFdDoorbell::create();
  auto producer_bell = EventFdDoorbell::create();
  ASSERT_TRUE(consumer_bell && producer_bell);
  void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* shared = new (mem) Shared();

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::_exit(run_consumer(name, records, *consumer_bell, *producer_bell, shared));
  }

  // Watchdog: both counters must move at least once every 5 s (the 1 s hunt for lost
  // wakeups is ring_lost_wakeup_test; here a cross-core placement change can slow a
  // 64 KiB copy stream, not stop it).
  std::atomic<bool> stop{false};
  std::atomic<bool> stalled{false};
  std::thread watchdog([&] {
    std::uint64_t last = ~0ULL;
    auto changed = std::chrono::steady_clock::now();
    while (!stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // sampling period only
      const std::uint64_t now_p = shared->produced.load() + shared->consumed.load();
      const auto now = std::chrono::steady_clock::now();
      if (now_p != last) {
        last = now_p;
        changed = now;
      } else if (now - changed > std::chrono::seconds(5)) {
        stalled.store(true);
        ::kill(child, SIGKILL);
        producer_bell->ring();  // let the producer see `stalled` and stop
        return;
      }
    }
  });

  FrameProducer p = ch->producer(&*consumer_bell);
  Rng rng{12345};
  std::vector<std::byte> pattern(2 * kMaxRecord);
  for (auto& b : pattern) b = static_cast<std::byte>(rng.next());
  std::uint64_t producer_sleeps = 0;
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t seq = 0;
  while (seq < records && !stalled.load(std::memory_order_relaxed)) {
    const std::uint32_t len = log_uniform_size(rng, kMinRecord, kMaxRecord);
    Reservation r = p.reserve_or_arm(len);
    if (r.status == Reserve::kFull) {
      ++producer_sleeps;
      producer_bell->wait();
      continue;
    }
    ASSERT_EQ(r.status, Reserve::kReserved);
    vswitch::testing::make_record(r.payload, seq, pattern);
    p.commit(len);
    ++seq;
    if ((seq & 15) == 0) {
      p.publish();
      shared->produced.store(seq, std::memory_order_relaxed);
    }
  }
  p.publish();
  shared->produced.store(seq, std::memory_order_relaxed);

  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  stop.store(true);
  watchdog.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(stalled.load()) << "no progress for 5 s: produced " << shared->produced.load()
                               << ", consumed " << shared->consumed.load();
  ASSERT_TRUE(WIFEXITED(status)) << "consumer killed";
  EXPECT_EQ(WEXITSTATUS(status), 0) << shared->failure;
  EXPECT_EQ(shared->consumed.load(), records);
  std::printf("%llu records, %.1f GB in %.1f s (%.2f GB/s); consumer slept %llu times, producer %llu\n",
              static_cast<unsigned long long>(records), static_cast<double>(shared->bytes.load()) / 1e9,
              secs, static_cast<double>(shared->bytes.load()) / 1e9 / secs,
              static_cast<unsigned long long>(shared->consumer_sleeps.load()),
              static_cast<unsigned long long>(producer_sleeps));
  ::munmap(mem, sizeof(Shared));
}

}  // namespace
}  // namespace vswitch::shm
