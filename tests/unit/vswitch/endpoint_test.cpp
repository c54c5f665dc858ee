// The endpoint run loop end to end without root: generator frontends on real channels in
// shared memory, each endpoint's loop on its own thread sleeping on its own eventfd (under
// TSan in CI), observed only through the stats region, as vswitchctl sees it.
#include "vswitch/endpoint.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "shm/sys/eventfd.hpp"
#include "vswitch/frontends.hpp"

namespace vswitch {
namespace {

using namespace std::chrono_literals;

std::string unique_name() {
  static std::atomic<int> n{0};
  return "eptest" + std::to_string(::getpid()) + "x" + std::to_string(n++);
}

// Waits for `cond` to hold, polling; fails the test after `limit`.
bool eventually(const std::function<bool()>& cond, std::chrono::seconds limit = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class TestSwitch {
 public:
  // `endpoints` generator endpoints e0..eN-1 with MACs 02:..:0i; extra TOML for [fabric].
  TestSwitch(std::size_t endpoints, const std::string& fabric_toml, const std::string& extra_endpoint_toml = "") {
    std::string text = "[switch]\nname = \"" + unique_name() + "\"\n[fabric]\n" + fabric_toml + "\n";
    for (std::size_t i = 0; i < endpoints; ++i) {
      text += "[[endpoint]]\nname = \"e" + std::to_string(i) + "\"\nfrontend = \"generator\"\nmac = \"02:00:00:00:00:0" +
              std::to_string(i + 1) + "\"\n";
      if (i == 0) text += extra_endpoint_toml;
    }
    auto t = load_topology_string(text, "test.toml");
    EXPECT_TRUE(t.has_value()) << (t ? "" : format_errors(t.error()));
    topo_ = t.value();
    shm::FabricSpec spec;
    spec.name = topo_.switch_config.name;
    for (const auto& e : topo_.endpoints) spec.endpoints.push_back(e.name);
    spec.ring_bytes = topo_.fabric.ring_bytes;
    spec.max_payload = topo_.fabric.max_frame + shm::kVirtioNetHeaderBytes;
    spec.generation = 7;
    auto f = shm::Fabric::create(spec);
    EXPECT_TRUE(f.has_value()) << (f ? "" : f.error());
    fabric_.emplace(std::move(f.value()));
    auto s = StatsRegion::create(spec.name, endpoints, 4096, 7);
    EXPECT_TRUE(s.has_value());
    stats_.emplace(std::move(s.value()));
    for (std::size_t i = 0; i < endpoints; ++i) bells_.push_back(std::move(shm::EventFdDoorbell::create().value()));
    for (auto& b : bells_) bell_ptrs_.push_back(&b);
    runners_.resize(endpoints);
  }
  ~TestSwitch() {
    for (std::size_t i = 0; i < runners_.size(); ++i) stop(i);
  }

  GeneratorFrontend::Config generator(std::size_t from, std::optional<std::size_t> to, std::uint64_t count,
                                      std::uint32_t incarnation = 0) const {
    GeneratorFrontend::Config c;
    c.stream = static_cast<std::uint32_t>(from) | (incarnation << 8);
    c.source = *topo_.endpoints[from].mac;
    c.destination = to ? *topo_.endpoints[*to].mac : MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    c.sizes = {60, 1400, 300};
    c.count = count;
    return c;
  }

  GeneratorFrontend::Config receiver(std::size_t i) const {
    return GeneratorFrontend::receive_only(*topo_.endpoints[i].mac);
  }

  void start(std::size_t i, GeneratorFrontend::Config c) {
    auto r = std::make_unique<Runner>();
    r->stop = std::move(sys::EventFd::create().value());
    Runner* raw = r.get();
    const Counters initial = stats_->read_counters(i);
    raw->thread = std::thread([this, i, c, raw, initial] {
      EndpointResources res;
      res.topology = &topo_;
      res.self = i;
      res.fabric = &*fabric_;
      res.doorbells = bell_ptrs_;
      res.doorbell_fd = bells_[i].fd();
      res.stats = &*stats_;
      res.stop_fd = raw->stop.fd();
      Counters scratch{};
      GeneratorFrontend gen(c, scratch);
      EndpointLoop loop(res, gen, initial);
      gen.use_counters(loop.counters());
      auto st = loop.run();
      EXPECT_TRUE(st.has_value());
    });
    runners_[i] = std::move(r);
  }
  void stop(std::size_t i) {
    if (!runners_[i]) return;
    runners_[i]->stop.signal();
    runners_[i]->thread.join();
    runners_[i].reset();
  }
  Counters counters(std::size_t i) const { return stats_->read_counters(i); }
  std::uint64_t drops(std::size_t i, DropReason r) const {
    return counters(i).drops[static_cast<std::size_t>(r)];
  }
  std::uint64_t total_drops(std::size_t i) const {
    std::uint64_t n = 0;
    for (auto d : counters(i).drops) n += d;
    return n;
  }

 private:
  struct Runner {
    sys::EventFd stop = std::move(sys::EventFd::create().value());
    std::thread thread;
  };
  Topology topo_;
  std::optional<shm::Fabric> fabric_;
  std::optional<StatsRegion> stats_;
  std::vector<shm::EventFdDoorbell> bells_;
  std::vector<shm::Doorbell*> bell_ptrs_;
  std::vector<std::unique_ptr<Runner>> runners_;
};

const char* kTinyRings = "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 5000\n";

TEST(EndpointLoop, UnicastAtFullSpeedThroughTinyRingsLosesNothing) {
  TestSwitch sw(2, kTinyRings);
  constexpr std::uint64_t kFrames = 200'000;
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, 1, kFrames));
  ASSERT_TRUE(eventually([&] { return sw.counters(1).gen_received == kFrames; }))
      << "received " << sw.counters(1).gen_received;
  sw.stop(0);
  sw.stop(1);
  const Counters a = sw.counters(0), b = sw.counters(1);
  EXPECT_EQ(a.gen_sent, kFrames);
  EXPECT_EQ(a.unicast, kFrames);
  EXPECT_EQ(a.out_frames[1], kFrames);
  EXPECT_EQ(b.in_frames[0], kFrames);
  EXPECT_EQ(b.gen_lost, 0u);
  EXPECT_EQ(b.gen_out_of_order, 0u);
  EXPECT_EQ(b.gen_bad, 0u);
  EXPECT_EQ(sw.total_drops(0) + sw.total_drops(1), 0u);
  EXPECT_GT(a.backpressure_waits, 0u) << "an 8 KiB ring at full speed must push back";
}

TEST(EndpointLoop, BothDirectionsAtOnce) {
  TestSwitch sw(2, kTinyRings);
  constexpr std::uint64_t kFrames = 100'000;
  sw.start(0, sw.generator(0, 1, kFrames));
  sw.start(1, sw.generator(1, 0, kFrames));
  ASSERT_TRUE(eventually([&] { return sw.counters(0).gen_received == kFrames && sw.counters(1).gen_received == kFrames; }));
  for (std::size_t i : {0u, 1u}) {
    EXPECT_EQ(sw.counters(i).gen_lost, 0u);
    EXPECT_EQ(sw.total_drops(i), 0u);
  }
}

TEST(EndpointLoop, StalledPeerIsDroppedAndCountedAndComesBack) {
  TestSwitch sw(2, "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 50\n");
  sw.start(0, sw.generator(0, 1, 0));  // e1 is not running: its channel fills and stays full
  ASSERT_TRUE(eventually([&] { return sw.drops(0, DropReason::kPeerStalled) > 1000; }));
  EXPECT_EQ(sw.counters(0).peer_stalled[1], 1u);
  // The sender kept going: nothing is held forever.
  const auto sent = sw.counters(0).gen_sent;
  ASSERT_TRUE(eventually([&] { return sw.counters(0).gen_sent > sent + 1000; }));
  // The peer starts: frames flow again and the stalled flag clears.
  sw.start(1, sw.receiver(1));
  ASSERT_TRUE(eventually([&] { return sw.counters(1).gen_received > 1000 && sw.counters(0).peer_stalled[1] == 0; }));
  sw.stop(0);
  sw.stop(1);
  const Counters a = sw.counters(0), b = sw.counters(1);
  // Every frame sent is either in the channel, delivered, or a counted drop.
  EXPECT_EQ(a.gen_sent, a.out_frames[1] + sw.drops(0, DropReason::kPeerStalled) +
                            sw.drops(0, DropReason::kEndpointStopped));
  EXPECT_LE(b.in_frames[0], a.out_frames[1]);
  // The receiver saw a gap only where the sender counted stalled drops.
  EXPECT_LE(b.gen_lost, sw.drops(0, DropReason::kPeerStalled));
  EXPECT_EQ(b.gen_bad, 0u);
}

TEST(EndpointLoop, FloodingNeverBlocksAndCountsEveryCopyItDrops) {
  TestSwitch sw(3, kTinyRings);
  constexpr std::uint64_t kFrames = 50'000;
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, std::nullopt, kFrames));  // broadcast; e2 never runs
  ASSERT_TRUE(eventually([&] { return sw.counters(0).gen_sent == kFrames; }));
  ASSERT_TRUE(eventually([&] { return sw.counters(1).gen_received == sw.counters(0).out_frames[1]; }));
  sw.stop(0);
  sw.stop(1);
  const Counters a = sw.counters(0), b = sw.counters(1);
  EXPECT_EQ(a.flooded, kFrames);
  EXPECT_EQ(a.backpressure_waits, 0u) << "a flood must never wait for a peer";
  // Every copy went into a channel or is a counted drop.
  EXPECT_EQ(a.out_frames[1] + a.out_frames[2] + sw.drops(0, DropReason::kFloodPeerFull), 2 * kFrames);
  // e2 never ran: its channel took what fits, everything else for it was dropped.
  EXPECT_LT(a.out_frames[2], 100u);
  // What e1 missed shows as gaps no larger than the counted drops.
  EXPECT_EQ(b.gen_received, a.out_frames[1]);
  EXPECT_LE(b.gen_lost, sw.drops(0, DropReason::kFloodPeerFull));
  EXPECT_EQ(b.gen_bad, 0u);
}

TEST(EndpointLoop, PortSecurityDropsSpoofedSources) {
  TestSwitch sw(2, kTinyRings, "port_security = true\n");
  auto spoofed = sw.generator(0, 1, 1000);
  spoofed.source = MacAddress{{0x02, 0xba, 0xd0, 0, 0, 1}};
  sw.start(1, sw.receiver(1));
  sw.start(0, spoofed);
  ASSERT_TRUE(eventually([&] { return sw.drops(0, DropReason::kSpoofedSource) == 1000; }));
  sw.stop(0);
  sw.stop(1);
  EXPECT_EQ(sw.counters(0).out_frames[1], 0u);
  EXPECT_EQ(sw.counters(1).gen_received, 0u);
}

TEST(EndpointLoop, ARestartedReceiverContinuesItsCountersAndStream) {
  TestSwitch sw(2, "ring_bytes = 65536\nmax_frame = 1500\nstall_timeout_ms = 5000\n");
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, 1, 0));
  ASSERT_TRUE(eventually([&] { return sw.counters(1).gen_received > 10'000; }));
  sw.stop(1);  // the receiver goes away; the sender holds frames (stall timeout 5 s)
  const auto before = sw.counters(1).gen_received;
  auto again = sw.receiver(1);
  again.join_streams_midway = true;  // as vswitchd starts a restarted endpoint
  sw.start(1, again);
  ASSERT_TRUE(eventually([&] { return sw.counters(1).gen_received > before + 10'000; }));
  sw.stop(0);
  sw.stop(1);
  EXPECT_EQ(sw.counters(1).gen_lost, 0u) << "the channel kept every frame while the receiver restarted";
  EXPECT_EQ(sw.counters(1).gen_out_of_order, 0u);
  // The only drop allowed: the frame the sender held for a full channel when it was stopped.
  EXPECT_LE(sw.drops(0, DropReason::kEndpointStopped), 1u);
  EXPECT_EQ(sw.total_drops(0) - sw.drops(0, DropReason::kEndpointStopped), 0u);
}

TEST(EndpointLoop, IdleEndpointsSleep) {
  TestSwitch sw(2, kTinyRings);
  sw.start(0, sw.generator(0, 1, 10));
  sw.start(1, sw.generator(1, 0, 10));
  ASSERT_TRUE(eventually([&] { return sw.counters(0).gen_received == 10 && sw.counters(1).gen_received == 10; }));
  // Counters are published before every sleep; loops stops growing once both are idle.
  ASSERT_TRUE(eventually([&] {
    const auto l0 = sw.counters(0).loops, l1 = sw.counters(1).loops;
    std::this_thread::sleep_for(50ms);
    return sw.counters(0).loops == l0 && sw.counters(1).loops == l1;
  }));
  const auto s0 = sw.counters(0).sleeps, s1 = sw.counters(1).sleeps;
  std::this_thread::sleep_for(200ms);  // the observation window, not synchronisation
  EXPECT_EQ(sw.counters(0).sleeps, s0) << "an idle endpoint must not wake up";
  EXPECT_EQ(sw.counters(1).sleeps, s1);
}

}  // namespace
}  // namespace vswitch
