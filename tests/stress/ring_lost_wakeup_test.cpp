// Lost-wakeup hunt: a ring of a few KiB, producer and consumer both sleeping through the
// handshake (data-available and free-send), random pauses on both sides, one-record and
// burst calls mixed, millions of hand-offs. Every wait blocks without a timeout, so a lost wakeup is a hang: a watchdog
// fails the test when progress stops for a second, then rescues the threads.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "shm/doorbell.hpp"
#include "shm/frame_ring.hpp"
#include "tests/stress/stress_config.hpp"
#include "tests/support/checked_record.hpp"
#include "tests/unit/shm/ring_fixture.hpp"

namespace vswitch::shm {
namespace {

using vswitch::testing::Rng;
using vswitch::testing::scaled;

void random_pause(Rng& rng) {
  const std::uint64_t r = rng.below(1000);
  if (r < 700) return;                       // most hand-offs: no pause
  if (r < 950) {                             // a short spin: lands between arm and check
    for (std::uint64_t i = rng.below(2000); i > 0; --i) std::atomic_signal_fence(std::memory_order_seq_cst);
    return;
  }
  if (r < 995) { sched_yield(); return; }    // give the other side the core
  std::this_thread::sleep_for(std::chrono::microseconds(rng.below(200)));
}

struct HuntResult {
  std::uint64_t received = 0;
  std::uint64_t consumer_sleeps = 0;
  std::uint64_t producer_sleeps = 0;
  bool stalled = false;
  std::string failure;
};

HuntResult hunt(std::uint64_t capacity, std::uint32_t max_payload, std::uint64_t records) {
  testing::HeapRing ring(capacity, max_payload);
  auto consumer_bell = EventFdDoorbell::create();
  auto producer_bell = EventFdDoorbell::create();
  if (!consumer_bell || !producer_bell) return {0, 0, 0, false, "eventfd"};
  std::atomic<std::uint64_t> progress{0};
  std::atomic<bool> done{false};
  std::atomic<bool> stop{false};  // set on a stall or a failure: both threads quit
  HuntResult result;

  std::thread producer([&] {
    FrameProducer p(ring.area(), &*consumer_bell);
    Rng rng{1};
    std::vector<std::byte> pattern(max_payload * 2);
    for (auto& b : pattern) b = static_cast<std::byte>(rng.next());
    for (std::uint64_t seq = 0; seq < records && !stop.load(std::memory_order_relaxed);) {
      if (rng.below(4) == 0) {  // a burst; whatever does not fit goes the one-record way
        std::uint32_t lengths[8];
        const std::size_t want = std::min<std::uint64_t>(1 + rng.below(8), records - seq);
        for (std::size_t i = 0; i < want; ++i)
          lengths[i] = static_cast<std::uint32_t>(vswitch::testing::kCheckedHeaderBytes +
                                                  rng.below(max_payload - vswitch::testing::kCheckedHeaderBytes + 1));
        seq += p.try_push_burst(std::span(lengths, want), [&](std::size_t i, std::span<std::byte> d) {
          vswitch::testing::make_record(d, seq + i, pattern);
        });
        random_pause(rng);
        continue;
      }
      const std::uint32_t len = static_cast<std::uint32_t>(
          vswitch::testing::kCheckedHeaderBytes + rng.below(max_payload - vswitch::testing::kCheckedHeaderBytes + 1));
      Reservation r = p.reserve_or_arm(len);
      if (r.status == Reserve::kFull) {
        ++result.producer_sleeps;
        producer_bell->wait();  // no timeout: a lost free-send wakeup hangs here
        continue;
      }
      vswitch::testing::make_record(r.payload, seq, pattern);
      p.commit(len);
      ++seq;
      if (rng.below(4) == 0) {
        p.publish();
        random_pause(rng);
      }
    }
    p.publish();
  });

  std::thread consumer([&] {
    FrameConsumer c(ring.area(), &*producer_bell);
    Rng rng{2};
    std::uint64_t expect = 0;
    while (expect < records && !stop.load(std::memory_order_relaxed)) {
      if (rng.below(4) == 0) {  // a burst
        bool bad = false;
        c.consume_burst(1 + rng.below(16), [&](std::span<const std::byte> payload) {
          std::uint64_t seq = 0;
          if (bad || vswitch::testing::check_record(payload, seq) != vswitch::testing::RecordCheck::kOk ||
              seq != expect) {
            bad = true;
            return;
          }
          ++expect;
        });
        if (bad) {
          result.failure = "burst: bad record at " + std::to_string(expect);
          stop.store(true);
          break;
        }
        progress.store(expect, std::memory_order_relaxed);
        if (c.counters().resyncs != 0) {
          result.failure = "ring reported corruption in a burst";
          stop.store(true);
          break;
        }
        random_pause(rng);
        continue;  // the loop condition decides whether anything is left to wait for
      }
      PopResult r = c.peek_or_arm();
      if (r.status == Pop::kEmpty) {
        ++result.consumer_sleeps;
        consumer_bell->wait();  // no timeout: a lost data wakeup hangs here
        continue;
      }
      if (r.status == Pop::kCorrupt) {
        result.failure = "ring reported corruption: " + std::string(to_string(r.error));
        stop.store(true);
        break;
      }
      std::uint64_t seq = 0;
      const auto check = vswitch::testing::check_record(r.payload, seq);
      if (check != vswitch::testing::RecordCheck::kOk || seq != expect) {
        result.failure = "record " + std::to_string(expect) + ": got seq " + std::to_string(seq) +
                         " check " + std::to_string(static_cast<int>(check));
        stop.store(true);
        break;
      }
      c.consume();
      ++expect;
      progress.store(expect, std::memory_order_relaxed);
      if (rng.below(4) == 0) {
        c.release();
        random_pause(rng);
      }
    }
    c.release();
    result.received = expect;
    done.store(true);
  });

  // Watchdog: progress must move at least once every 5 s. Both waits above have no
  // timeout, so a lost wake-up stops progress for good; 5 s, not less, so a machine that
  // holds the whole process off its cores for a moment (TSan runs this for a minute on a
  // loaded VM) is not taken for one.
  std::uint64_t last = 0;
  auto last_change = std::chrono::steady_clock::now();
  while (!done.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // sampling period, not synchronisation
    const std::uint64_t now_progress = progress.load(std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    if (now_progress != last) {
      last = now_progress;
      last_change = now;
    } else if (now - last_change > std::chrono::seconds(5)) {
      stop.store(true);
      result.stalled = true;
      result.failure = "no progress for 5 s at record " + std::to_string(now_progress) +
                       ": head " + std::to_string(ring.head_word()) + " tail " +
                       std::to_string(ring.tail_word()) + " consumer_waiting " +
                       std::to_string(ring.consumer_waiting_word()) + " producer_wants " +
                       std::to_string(ring.producer_wants_word());
      break;
    }
  }
  while (!done.load()) {  // rescue the sleepers so the threads can be joined
    consumer_bell->ring();
    producer_bell->ring();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  producer_bell->ring();  // a producer still waiting for space sees `stop` and quits
  producer.join();
  consumer.join();
  return result;
}

TEST(RingLostWakeup, BothSidesSleepingNeverStall) {
  const std::uint64_t records = scaled(3'000'000);
  HuntResult r = hunt(4096, 1000, records);
  EXPECT_FALSE(r.stalled) << r.failure;
  EXPECT_TRUE(r.failure.empty()) << r.failure;
  EXPECT_EQ(r.received, records);
  // The hunt only means something if both sides really slept, many times.
  EXPECT_GT(r.consumer_sleeps, records / 1000) << "consumer slept " << r.consumer_sleeps;
  EXPECT_GT(r.producer_sleeps, records / 1000) << "producer slept " << r.producer_sleeps;
  std::printf("records %llu, consumer sleeps %llu, producer sleeps %llu\n",
              static_cast<unsigned long long>(r.received), static_cast<unsigned long long>(r.consumer_sleeps),
              static_cast<unsigned long long>(r.producer_sleeps));
}

TEST(RingLostWakeup, RingOfOneMaximumRecordNeverStalls) {
  // Every large record needs the whole ring: the free-send threshold is at its maximum.
  const std::uint64_t records = scaled(500'000);
  HuntResult r = hunt(1024, 1016, records);
  EXPECT_FALSE(r.stalled) << r.failure;
  EXPECT_TRUE(r.failure.empty()) << r.failure;
  EXPECT_EQ(r.received, records);
}

}  // namespace
}  // namespace vswitch::shm
