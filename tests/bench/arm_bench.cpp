// vswitch-bench arm: what it costs an endpoint to go to sleep on its N-1 inbound channels
// as N grows: one sleep arms every channel (peek_or_arm(): peek, request, [F2], re-check)
// and withdraws each request on waking (disarm()), as EndpointLoop::sleep() does.
//
// Two settings of the channels' control words:
//   local   nobody else touches them: they stay in this core's cache;
//   shared  another thread reads every channel's consumer_waiting word in a loop, as
//           producers do when they publish ([F1]): each request store first has to take
//           its line back from the other core.
// Each figure is the median over rounds; per channel is the sleep's cost divided by N.
//   vswitch-bench arm [--json] [--rounds R] [--sleeps N] [--channels 1,7,31,61]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shm/frame_ring.hpp"
#include "tests/unit/shm/ring_fixture.hpp"

namespace vswitch::bench {
namespace {

using shm::FrameConsumer;
using shm::Pop;
using shm::testing::HeapRing;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 != 0 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Channels {
  std::vector<std::unique_ptr<HeapRing>> rings;
  std::vector<FrameConsumer> consumers;
  explicit Channels(std::size_t n) {
    rings.reserve(n);
    consumers.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      rings.push_back(std::make_unique<HeapRing>(4096, 1024));
      consumers.emplace_back(rings.back()->area(), nullptr);
    }
  }
};

// One sleep's arming; returns whether anything was found (never, here: the rings stay
// empty, which is the case being measured: an idle or lightly loaded mesh).
bool arm_all(Channels& c) noexcept {
  bool ready = false;
  for (FrameConsumer& f : c.consumers)
    if (f.peek_or_arm().status != Pop::kEmpty) ready = true;
  for (FrameConsumer& f : c.consumers) f.disarm();
  return ready;
}

template <typename F>
double ns_per_sleep(Channels& c, std::uint64_t sleeps, F&& arm) {
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t found = 0;
  for (std::uint64_t i = 0; i < sleeps; ++i) found += arm(c) ? 1U : 0U;
  const auto t1 = std::chrono::steady_clock::now();
  if (found != 0) std::fprintf(stderr, "arm bench: a ring was not empty\n");
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()) /
         static_cast<double>(sleeps);
}

void usage() {
  std::fprintf(stderr, "usage: vswitch-bench arm [--json] [--rounds R, default 7] [--sleeps N per run, default 20000]"
                       " [--channels 1,7,31,61]\n");
}

}  // namespace

int bench_arm(int argc, char** argv) {
  bool json = false;
  int rounds = 7;
  std::uint64_t sleeps = 20000;
  std::vector<std::size_t> counts{1, 7, 31, 61};
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--sleeps" && i + 1 < argc) {
      sleeps = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--channels" && i + 1 < argc) {
      counts.clear();
      const std::string list = argv[++i];
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t comma = std::min(list.find(',', at), list.size());
        const unsigned long v = std::strtoul(list.substr(at, comma - at).c_str(), nullptr, 10);
        if (v == 0 || v > 63) {
          usage();
          return 2;
        }
        counts.push_back(v);
        at = comma + 1;
      }
    } else {
      usage();
      return 2;
    }
  }
  if (rounds < 1 || sleeps == 0) {
    usage();
    return 2;
  }
  for (const bool shared : {false, true}) {
    for (const std::size_t n : counts) {
      Channels c(n);
      std::atomic<bool> stop{false};
      std::thread reader;
      if (shared) {
        // Stands for the producers: reads each request word the way publish() does after
        // [F1], so the lines move between this core and the consumer's.
        reader = std::thread([&] {
          std::uint64_t sum = 0;
          while (!stop.load(std::memory_order_relaxed))
            for (auto& r : c.rings) sum += std::atomic_ref<std::uint32_t>(r->consumer_waiting_word()).load(std::memory_order_relaxed);
          if (sum == ~std::uint64_t{0}) std::fprintf(stderr, "%llu\n", static_cast<unsigned long long>(sum));
        });
      }
      std::vector<double> per_sleep;
      for (int r = 0; r < rounds; ++r) per_sleep.push_back(ns_per_sleep(c, sleeps, arm_all));
      stop.store(true, std::memory_order_relaxed);
      if (reader.joinable()) reader.join();
      const char* setting = shared ? "shared" : "local";
      const double ns = median(per_sleep);
      if (json)
        std::printf("{\"bench\":\"arm\",\"setting\":\"%s\",\"channels\":%zu,\"rounds\":%d,\"ns_per_sleep\":%.0f,"
                    "\"ns_per_channel\":%.1f}\n",
                    setting, n, rounds, ns, ns / static_cast<double>(n));
      else
        std::printf("%-6s %2zu channels: %7.0f ns per sleep, %5.1f ns per channel\n", setting, n, ns,
                    ns / static_cast<double>(n));
    }
  }
  return 0;
}

}  // namespace vswitch::bench
