// The endpoint run loop end to end without root: generator frontends on real channels in
// shared memory, each endpoint's loop on its own thread sleeping on its own eventfd (under
// TSan in CI), observed only through the stats region, as vswitchctl sees it.
#include "vswitch/dataplane/endpoint.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "endpoints/generator/test_frame.hpp"
#include "shm/sys/eventfd.hpp"
#include "vswitch/frontends/generator.hpp"

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
    const shm::FabricSpec spec = topo_.fabric_spec(7);
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

  // What endpoint i's loop runs on: this switch's topology, fabric, doorbells and stats.
  EndpointResources resources(std::size_t i, int doorbell_fd, int stop_fd) {
    EndpointResources res;
    res.topology = &topo_;
    res.self = i;
    res.fabric = &*fabric_;
    res.doorbells = bell_ptrs_;
    res.doorbell_fd = doorbell_fd;
    res.stats = &*stats_;
    res.stop_fd = stop_fd;
    return res;
  }

  GeneratorFrontend::Config receiver(std::size_t i) const {
    return GeneratorFrontend::receive_only(*topo_.endpoints[i].mac);
  }

  // Runs endpoint i's loop on a thread with `doorbell_fd` as its doorbell until it
  // returns by itself; after `limit` it is stopped and the result says so.
  sys::Status<std::string> run_with_doorbell(std::size_t i, int doorbell_fd, std::chrono::seconds limit) {
    auto stop_fd = std::move(sys::EventFd::create().value());
    std::atomic<bool> done{false};
    sys::Status<std::string> result;
    std::thread t([&] {
      const EndpointResources res = resources(i, doorbell_fd, stop_fd.fd());
      GeneratorFrontend gen(receiver(i));
      EndpointLoop loop(res, gen);
      result = loop.run();
      done = true;
    });
    const bool ended = eventually([&] { return done.load(); }, limit);
    if (!ended) stop_fd.signal();
    t.join();
    if (!ended) return sys::Unexpected(std::string("still running after the limit (stopped from outside)"));
    return result;
  }

  void start(std::size_t i, GeneratorFrontend::Config c) {
    auto r = std::make_unique<Runner>();
    r->stop = std::move(sys::EventFd::create().value());
    Runner* raw = r.get();
    const EndpointCounters initial = stats_->read_counters(i);
    raw->thread = std::thread([this, i, c, raw, initial] {
      const EndpointResources res = resources(i, bells_[i].fd(), raw->stop.fd());
      GeneratorFrontend gen(c, sys::load_block<GeneratorCounters>(initial.frontend));
      EndpointLoop loop(res, gen, initial);
      auto st = loop.run();
      EXPECT_TRUE(st.has_value());
    });
    runners_[i] = std::move(r);
  }
  // Runs endpoint i's loop with `frontend` pass by pass on this thread until `done()`
  // holds; false when it did not within `limit`.
  bool poll_until(std::size_t i, Frontend& frontend, const std::function<bool()>& done,
                  std::chrono::seconds limit = 30s) {
    EndpointLoop loop(resources(i, bells_[i].fd(), -1), frontend);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.poll_once();
    }
    return true;
  }
  void stop(std::size_t i) {
    if (!runners_[i]) return;
    runners_[i]->stop.signal();
    runners_[i]->thread.join();
    runners_[i].reset();
  }
  EndpointCounters counters(std::size_t i) const { return stats_->read_counters(i); }
  GeneratorCounters gen(std::size_t i) const { return sys::load_block<GeneratorCounters>(counters(i).frontend); }
  std::uint64_t drops(std::size_t i, DropReason r) const { return counters(i).drops[r]; }
  std::uint64_t total_drops(std::size_t i) const { return counters(i).drops.total(); }

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
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received == kFrames; }))
      << "received " << sw.gen(1).received;
  sw.stop(0);
  sw.stop(1);
  const EndpointCounters a = sw.counters(0), b = sw.counters(1);
  const GeneratorCounters ga = sw.gen(0), gb = sw.gen(1);
  EXPECT_EQ(ga.sent, kFrames);
  EXPECT_EQ(a.forwarding.unicast, kFrames);
  EXPECT_EQ(a.peers[1].out_frames, kFrames);
  EXPECT_EQ(b.peers[0].in_frames, kFrames);
  EXPECT_EQ(gb.lost, 0u);
  EXPECT_EQ(gb.out_of_order, 0u);
  EXPECT_EQ(gb.bad, 0u);
  EXPECT_EQ(sw.total_drops(0) + sw.total_drops(1), 0u);
  EXPECT_GT(a.forwarding.backpressure_waits, 0u) << "an 8 KiB ring at full speed must push back";
}

TEST(EndpointLoop, BothDirectionsAtOnce) {
  TestSwitch sw(2, kTinyRings);
  constexpr std::uint64_t kFrames = 100'000;
  sw.start(0, sw.generator(0, 1, kFrames));
  sw.start(1, sw.generator(1, 0, kFrames));
  ASSERT_TRUE(eventually([&] { return sw.gen(0).received == kFrames && sw.gen(1).received == kFrames; }));
  for (std::size_t i : {0u, 1u}) {
    EXPECT_EQ(sw.gen(i).lost, 0u);
    EXPECT_EQ(sw.total_drops(i), 0u);
  }
}

TEST(EndpointLoop, StalledPeerIsDroppedAndCountedAndComesBack) {
  TestSwitch sw(2, "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 50\n");
  sw.start(0, sw.generator(0, 1, 0));  // e1 is not running: its channel fills and stays full
  ASSERT_TRUE(eventually([&] { return sw.drops(0, DropReason::kPeerStalled) > 1000; }));
  EXPECT_EQ(sw.counters(0).peers[1].stalled, 1u);
  // The sender kept going: nothing is held forever.
  const auto sent = sw.gen(0).sent;
  ASSERT_TRUE(eventually([&] { return sw.gen(0).sent > sent + 1000; }));
  // The peer starts: frames flow again and the stalled flag clears.
  sw.start(1, sw.receiver(1));
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received > 1000 && sw.counters(0).peers[1].stalled == 0; }));
  sw.stop(0);
  sw.stop(1);
  const EndpointCounters a = sw.counters(0), b = sw.counters(1);
  const GeneratorCounters ga = sw.gen(0), gb = sw.gen(1);
  // Every frame sent is either in the channel, delivered, or a counted drop.
  EXPECT_EQ(ga.sent, a.peers[1].out_frames + sw.drops(0, DropReason::kPeerStalled) +
                            sw.drops(0, DropReason::kEndpointStopped));
  EXPECT_LE(b.peers[0].in_frames, a.peers[1].out_frames);
  // The receiver saw a gap only where the sender counted stalled drops.
  EXPECT_LE(gb.lost, sw.drops(0, DropReason::kPeerStalled));
  EXPECT_EQ(gb.bad, 0u);
}

TEST(EndpointLoop, FloodingNeverBlocksAndCountsEveryCopyItDrops) {
  TestSwitch sw(3, kTinyRings);
  constexpr std::uint64_t kFrames = 50'000;
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, std::nullopt, kFrames));  // broadcast; e2 never runs
  ASSERT_TRUE(eventually([&] { return sw.gen(0).sent == kFrames; }));
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received == sw.counters(0).peers[1].out_frames; }));
  sw.stop(0);
  sw.stop(1);
  const EndpointCounters a = sw.counters(0);
  const GeneratorCounters gb = sw.gen(1);
  EXPECT_EQ(a.forwarding.flooded, kFrames);
  EXPECT_EQ(a.forwarding.backpressure_waits, 0u) << "a flood must never wait for a peer";
  // Every copy went into a channel or is a counted drop.
  EXPECT_EQ(a.peers[1].out_frames + a.peers[2].out_frames + sw.drops(0, DropReason::kFloodPeerFull), 2 * kFrames);
  // e2 never ran: its channel took what fits, everything else for it was dropped.
  EXPECT_LT(a.peers[2].out_frames, 100u);
  // What e1 missed shows as gaps no larger than the counted drops.
  EXPECT_EQ(gb.received, a.peers[1].out_frames);
  EXPECT_LE(gb.lost, sw.drops(0, DropReason::kFloodPeerFull));
  EXPECT_EQ(gb.bad, 0u);
}

// Port security is on by default for an endpoint with a mac (TestSwitch gives each one).
TEST(EndpointLoop, PortSecurityDropsSpoofedSources) {
  TestSwitch sw(2, kTinyRings);
  auto spoofed = sw.generator(0, 1, 1000);
  spoofed.source = MacAddress{{0x02, 0xba, 0xd0, 0, 0, 1}};
  sw.start(1, sw.receiver(1));
  sw.start(0, spoofed);
  ASSERT_TRUE(eventually([&] { return sw.drops(0, DropReason::kSpoofedSource) == 1000; }));
  sw.stop(0);
  sw.stop(1);
  EXPECT_EQ(sw.counters(0).peers[1].out_frames, 0u);
  EXPECT_EQ(sw.gen(1).received, 0u);
}

// A restarted endpoint continues every block its predecessor published, not only its
// frontend's: the forwarder's drops and the MAC table's counters as well.
TEST(EndpointLoop, ARestartedEndpointContinuesItsDropAndMacCounters) {
  TestSwitch sw(2, kTinyRings, "port_security = false\n");  // e0 sends from an address not its own
  // Frames to e0's own (static) MAC from an address e0 learns: each is a hairpin drop.
  auto hairpin = sw.generator(0, 0, 1000);
  hairpin.source = MacAddress{{0x02, 0xba, 0xd0, 0, 0, 1}};
  sw.start(0, hairpin);
  ASSERT_TRUE(eventually([&] { return sw.drops(0, DropReason::kHairpin) == 1000; }));
  sw.stop(0);
  ASSERT_EQ(sw.counters(0).mac.learned, 1u);
  auto again = sw.generator(0, 0, 1000, /*incarnation=*/1);
  again.source = hairpin.source;
  sw.start(0, again);  // a new loop, forwarder and MAC table, as after a kill -9
  ASSERT_TRUE(eventually([&] { return sw.gen(0).sent == 2000; })) << "sent " << sw.gen(0).sent;
  ASSERT_TRUE(eventually([&] { return sw.drops(0, DropReason::kHairpin) == 2000; }))
      << "hairpin drops after the restart: " << sw.drops(0, DropReason::kHairpin);
  sw.stop(0);
  EXPECT_EQ(sw.counters(0).mac.learned, 2u) << "the new table learned the address again, on top of the old total";
  EXPECT_EQ(sw.counters(0).peers[1].out_frames, 0u);
}

TEST(EndpointLoop, ARestartedReceiverContinuesItsCountersAndStream) {
  TestSwitch sw(2, "ring_bytes = 65536\nmax_frame = 1500\nstall_timeout_ms = 5000\n");
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, 1, 0));
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received > 10'000; }));
  sw.stop(1);  // the receiver goes away; the sender holds frames (stall timeout 5 s)
  const auto before = sw.gen(1).received;
  auto again = sw.receiver(1);
  again.join_streams_midway = true;  // as vswitchd starts a restarted endpoint
  sw.start(1, again);
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received > before + 10'000; }));
  sw.stop(0);
  sw.stop(1);
  EXPECT_EQ(sw.gen(1).lost, 0u) << "the channel kept every frame while the receiver restarted";
  EXPECT_EQ(sw.gen(1).out_of_order, 0u);
  // The only drop allowed: the frame the sender held for a full channel when it was stopped.
  EXPECT_LE(sw.drops(0, DropReason::kEndpointStopped), 1u);
  EXPECT_EQ(sw.total_drops(0) - sw.drops(0, DropReason::kEndpointStopped), 0u);
}

// A doorbell epoll reports but that cannot be read (here the write end of a pipe whose
// reader is gone: EPOLLERR, then EBADF) would wake the loop forever: it ends with the
// reason instead, and the daemon restarts the endpoint.
TEST(EndpointLoop, ADoorbellThatCannotBeReadEndsTheLoopWithTheReason) {
  TestSwitch sw(2, kTinyRings);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ::close(p[0]);
  const auto st = sw.run_with_doorbell(0, p[1], 10s);
  ::close(p[1]);
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().find("doorbell: read"), std::string::npos) << st.error();
}

// A frontend that takes every frame only on its third try and checks the note it left on
// each try: a retry must bring back the note of that very frame, a new frame none.
class ChoosyFrontend final : public Frontend {
 public:
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte>, std::uint64_t) noexcept override { return {Rx::kNone}; }
  [[nodiscard]] bool may_defer_delivery() const noexcept override { return true; }
  Delivery deliver(const endpoints::virtio::CheckedNetHeader&, std::span<const std::byte> frame, PortId from,
                   std::uint64_t& resume) noexcept override {
    const auto id = endpoints::generator::check_test_frame(frame);
    if (!id) {
      ++wrong_notes;
      return Delivery::kDelivered;
    }
    const std::uint64_t frame_tag = (std::uint64_t{from} << 56) | (id.value().sequence << 8);
    const std::uint64_t tries = resume == 0 ? 0 : resume & 0xff;
    if (resume != 0 && (resume & ~std::uint64_t{0xff}) != frame_tag) ++wrong_notes;  // another frame's note
    if (tries < 2) {
      resume = frame_tag | (tries + 1);
      return Delivery::kRetryLater;
    }
    delivered.fetch_add(1);
    return Delivery::kDelivered;
  }
  std::atomic<std::uint64_t> delivered{0};
  std::uint64_t wrong_notes = 0;
};

// Two senders' frames wait at the same time, each in its channel with the frontend's note
// on it; every retry gets its own frame's note back and every fresh frame starts without.
TEST(EndpointLoop, AWaitingRecordKeepsItsFrontendsNote) {
  TestSwitch sw(3, kTinyRings);
  constexpr std::uint64_t kFrames = 300;
  sw.start(1, sw.generator(1, 0, kFrames));
  sw.start(2, sw.generator(2, 0, kFrames));
  ChoosyFrontend choosy;
  ASSERT_TRUE(sw.poll_until(0, choosy, [&] { return choosy.delivered.load() == 2 * kFrames; }))
      << "delivered " << choosy.delivered.load();
  EXPECT_EQ(choosy.wrong_notes, 0u);
  EXPECT_EQ(sw.total_drops(0), 0u);
}

TEST(EndpointLoop, IdleEndpointsSleep) {
  TestSwitch sw(2, kTinyRings);
  sw.start(0, sw.generator(0, 1, 10));
  sw.start(1, sw.generator(1, 0, 10));
  ASSERT_TRUE(eventually([&] { return sw.gen(0).received == 10 && sw.gen(1).received == 10; }));
  // Counters are published before every sleep; loops stops growing once both are idle.
  ASSERT_TRUE(eventually([&] {
    const auto l0 = sw.counters(0).loop.loops, l1 = sw.counters(1).loop.loops;
    std::this_thread::sleep_for(50ms);
    return sw.counters(0).loop.loops == l0 && sw.counters(1).loop.loops == l1;
  }));
  const auto s0 = sw.counters(0).loop.sleeps, s1 = sw.counters(1).loop.sleeps;
  std::this_thread::sleep_for(200ms);  // the observation window, not synchronisation
  EXPECT_EQ(sw.counters(0).loop.sleeps, s0) << "an idle endpoint must not wake up";
  EXPECT_EQ(sw.counters(1).loop.sleeps, s1);
}

}  // namespace
}  // namespace vswitch
