// The endpoint run loop end to end without root: generator frontends on real channels in
// shared memory, each endpoint's loop on its own thread sleeping on its own eventfd (under
// TSan in CI), observed only through the stats region, as vswitchctl sees it.
#include "vswitch/dataplane/endpoint.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "endpoints/generator/test_frame.hpp"
#include "tests/support/test_frontends.hpp"
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
  // `per_endpoint[i]`: more TOML for endpoint i (after extra_endpoint_toml for e0).
  TestSwitch(std::size_t endpoints, const std::string& fabric_toml, const std::string& extra_endpoint_toml = "",
             const std::vector<std::string>& per_endpoint = {}) {
    std::string text = "[switch]\nname = \"" + unique_name() + "\"\n[fabric]\n" + fabric_toml + "\n";
    for (std::size_t i = 0; i < endpoints; ++i) {
      text += "[[endpoint]]\nname = \"e" + std::to_string(i) + "\"\nfrontend = \"generator\"\nmac = \"02:00:00:00:00:0" +
              std::to_string(i + 1) + "\"\n";
      if (i == 0) text += extra_endpoint_toml;
      if (i < per_endpoint.size()) text += per_endpoint[i];
    }
    auto t = load_topology_string(text, "test.toml");
    EXPECT_TRUE(t.has_value()) << (t ? "" : format_errors(t.error()));
    topo_ = t.value();
    const shm::FabricSpec spec = topo_.fabric_spec(7);
    auto f = shm::Fabric::create(spec);
    EXPECT_TRUE(f.has_value()) << (f ? "" : f.error());
    fabric_.emplace(std::move(f.value()));
    auto s = StatsRegion::create(spec.name, spec.endpoints, 4096, 7);
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
    res.stats = stats_->slice(i);
    res.stop_fd = stop_fd;
    if (i < captures_.size()) res.capture = captures_[i];
    return res;
  }
  // Endpoint i copies frames into `w` while a reader asks (vswitch/observability/capture.hpp).
  void set_capture(std::size_t i, CaptureWriter* w) {
    captures_.resize(runners_.size(), nullptr);
    captures_[i] = w;
  }
  const Topology& topology() const { return topo_; }

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
  // Runs endpoint i's loop on a thread with `frontend` (which must outlive stop(i)).
  void start_with(std::size_t i, Frontend& frontend) {
    auto r = std::make_unique<Runner>();
    r->stop = std::move(sys::EventFd::create().value());
    Runner* raw = r.get();
    raw->thread = std::thread([this, i, raw, &frontend] {
      const EndpointResources res = resources(i, bells_[i].fd(), raw->stop.fd());
      EndpointLoop loop(res, frontend);
      auto st = loop.run();
      EXPECT_TRUE(st.has_value());
    });
    runners_[i] = std::move(r);
  }
  // The consumer side of the channel from -> to, for a test that plays a receiver by hand
  // (the endpoint `to` must not run). It rings `from` when it frees room.
  shm::FrameConsumer consumer(std::size_t from, std::size_t to) {
    return fabric_->channel(from, to)->consumer(bell_ptrs_[from]);
  }
  // The producer side of the channel from -> to, for a test that plays a sender by hand
  // (the endpoint `from` must not run). It rings `to` when it publishes to a sleeper.
  shm::FrameProducer producer(std::size_t from, std::size_t to) {
    return fabric_->channel(from, to)->producer(bell_ptrs_[to]);
  }
  // The record bytes of the channel from -> to, as a hostile sender can write them.
  std::span<std::byte> channel_data(std::size_t from, std::size_t to) {
    return fabric_->channel(from, to)->region().payload().subspan(shm::kRingDataOffset);
  }
  const MacAddress& mac(std::size_t i) const { return *topo_.endpoints[i].mac; }
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
  // How often endpoint i's doorbell was rung (by anyone).
  std::uint64_t doorbell_rings(std::size_t i) const { return bells_[i].rings(); }
  // What `vswitchctl link` writes: endpoint i's link word.
  void set_link_down(std::size_t i, bool down) { stats_->slice(i)->set_admin_down(down); }
  // What vswitchd writes into every slice when a reload turns ports off or on.
  void set_disabled(std::uint64_t mask) {
    for (std::size_t i = 0; i < runners_.size(); ++i) stats_->slice(i)->set_peers_disabled(mask);
  }
  // What vswitchd writes before it turns `port` on: where its channel to each endpoint
  // ended with its earlier run.
  void fence(std::size_t port) {
    for (std::size_t i = 0; i < runners_.size(); ++i)
      if (i != port) {
        stats_->slice(i)->set_stale_to(port, channel_head(port, i));
        stats_->slice(i)->bump_fence_seq();
      }
  }
  void bump_fence(std::size_t i) { stats_->slice(i)->bump_fence_seq(); }
  // What vswitchd writes into every slice when a reload changes a port's VLANs: each
  // port's `vlan` (none: VLAN-unaware), then the count that has the endpoints read them.
  void set_port_vlans(const std::vector<std::optional<std::uint16_t>>& access) {
    std::vector<PortInfo> ports(access.size());
    for (std::size_t p = 0; p < access.size(); ++p) {
      ports[p].vlans.set(access[p].value_or(0));
      ports[p].mac = topo_.endpoints[p].mac;
    }
    set_ports(ports);
  }
  // The whole table: each port's VLANs and address.
  void set_ports(const std::vector<PortInfo>& ports) {
    for (std::size_t i = 0; i < runners_.size(); ++i) {
      stats_->slice(i)->write_port_table(ports);
      stats_->slice(i)->bump_fence_seq();
    }
  }
  std::uint64_t channel_head(std::size_t from, std::size_t to) const {
    return fabric_->channel(from, to)->area().snapshot().head;
  }
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
  std::vector<CaptureWriter*> captures_;
};

const char* kTinyRings = "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 5000\n";

// Frames the sender dropped because the receiver's channel was full (or its peer stalled).
std::uint64_t full_drops(const TestSwitch& sw, std::size_t sender) {
  return sw.drops(sender, DropReason::kPeerFull) + sw.drops(sender, DropReason::kPeerStalled);
}

// A sender faster than its receiver, through an 8 KiB channel: a switch port cannot buffer
// without bound, so what does not fit is dropped (after a short hold), never reordered,
// and every frame is either received or a counted drop at the sender.
TEST(EndpointLoop, UnicastAtFullSpeedThroughTinyRingsCountsEveryFrameItDrops) {
  TestSwitch sw(2, kTinyRings);
  constexpr std::uint64_t kFrames = 200'000;
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, 1, kFrames));
  // 120 s: some 4 s under TSan here, several times that on a loaded machine or under qemu-user.
  ASSERT_TRUE(eventually([&] { return sw.gen(0).sent == kFrames && sw.gen(1).received + full_drops(sw, 0) == kFrames; },
                         120s))
      << "sent " << sw.gen(0).sent << ", received " << sw.gen(1).received << ", dropped " << full_drops(sw, 0);
  sw.stop(0);
  sw.stop(1);
  const EndpointCounters a = sw.counters(0), b = sw.counters(1);
  const GeneratorCounters gb = sw.gen(1);
  EXPECT_EQ(a.forwarding.unicast, kFrames);
  EXPECT_EQ(a.peers[1].out_frames, gb.received);
  EXPECT_EQ(b.peers[0].in_frames, gb.received);
  // Every gap the receiver saw is a counted drop at the sender (drops after the last frame
  // it received leave no gap).
  EXPECT_LE(gb.lost, full_drops(sw, 0));
  EXPECT_EQ(gb.out_of_order, 0u);
  EXPECT_EQ(gb.bad, 0u);
  EXPECT_EQ(sw.total_drops(0), full_drops(sw, 0));
  EXPECT_EQ(sw.total_drops(1), 0u);
  EXPECT_GT(a.forwarding.backpressure_waits, 0u) << "an 8 KiB ring at full speed must push back";
}

TEST(EndpointLoop, BothDirectionsAtOnce) {
  TestSwitch sw(2, kTinyRings);
  constexpr std::uint64_t kFrames = 100'000;
  sw.start(0, sw.generator(0, 1, kFrames));
  sw.start(1, sw.generator(1, 0, kFrames));
  ASSERT_TRUE(eventually(
      [&] {
        return sw.gen(0).sent == kFrames && sw.gen(1).sent == kFrames &&
               sw.gen(1).received + full_drops(sw, 0) == kFrames && sw.gen(0).received + full_drops(sw, 1) == kFrames;
      },
      120s));
  for (std::size_t i : {0u, 1u}) {
    EXPECT_LE(sw.gen(1 - i).lost, full_drops(sw, i));
    EXPECT_EQ(sw.gen(1 - i).out_of_order, 0u);
    EXPECT_EQ(sw.total_drops(i), full_drops(sw, i));
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
  EXPECT_EQ(ga.sent, a.peers[1].out_frames + full_drops(sw, 0) + sw.drops(0, DropReason::kEndpointStopped));
  EXPECT_LE(b.peers[0].in_frames, a.peers[1].out_frames);
  // The receiver saw a gap only where the sender counted drops (full before it stalled).
  EXPECT_LE(gb.lost, full_drops(sw, 0));
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
  sw.stop(1);  // the receiver goes away; the sender drops what its channel cannot hold
  const auto before = sw.gen(1).received;
  auto again = sw.receiver(1);
  again.join_streams_midway = true;  // as vswitchd starts a restarted endpoint
  sw.start(1, again);
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received > before + 10'000; }));
  sw.stop(0);
  sw.stop(1);
  // The channel kept what it holds while the receiver restarted; every gap is a frame the
  // sender counted as dropped for a full channel, and nothing came out of order.
  EXPECT_LE(sw.gen(1).lost, full_drops(sw, 0));
  EXPECT_EQ(sw.gen(1).out_of_order, 0u);
  EXPECT_EQ(sw.gen(1).bad, 0u);
  // Besides those, the only drop allowed: the frame the sender held when it was stopped.
  EXPECT_LE(sw.drops(0, DropReason::kEndpointStopped), 1u);
  EXPECT_EQ(sw.total_drops(0) - sw.drops(0, DropReason::kEndpointStopped), full_drops(sw, 0));
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
  Delivery deliver(const endpoints::virtio::CheckedNetHeader&, std::span<const std::byte> frame, FrameAddresses,
                   PortId from, std::uint64_t& resume) noexcept override {
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
  // The senders outrun e0 (three tries a frame): what their channels cannot hold they
  // drop and count; everything else reaches e0.
  ASSERT_TRUE(sw.poll_until(0, choosy, [&] {
    return choosy.delivered.load() + full_drops(sw, 1) + full_drops(sw, 2) == 2 * kFrames;
  })) << "delivered " << choosy.delivered.load();
  EXPECT_GT(choosy.delivered.load(), 0u);
  EXPECT_EQ(choosy.wrong_notes, 0u);
  EXPECT_EQ(sw.total_drops(0), 0u);
}

// The sender that alternates between two destinations and the receiver that withholds
// its buffers are shared with vswitch-bench hol.
using test_support::AlternatingFrontend;
using test_support::WithholdingFrontend;

// A receiver that never consumes (e1 never runs: its channel is never drained) must cost
// nobody else anything: the sender e0 sends alternately to e1 and e2, and e2 gets every
// frame addressed to it, long before e1 could count as stalled. Frames for e1 are dropped
// and counted (peer_full), one at a time, while the frontend is read on.
TEST(EndpointLoop, AFullPeerDoesNotBlockTheSendersOtherDestinations) {
  // 1 MiB channels and 10,000 frames/s to each destination: e2 keeps up with that easily,
  // and e1's channel is full after some 1,700 frames.
  TestSwitch sw(3, "ring_bytes = 1048576\nmax_frame = 1500\nstall_timeout_ms = 60000\n");
  constexpr std::uint64_t kEach = 10'000;
  sw.start(2, sw.receiver(2));
  auto to_e1 = sw.generator(0, 1, kEach), to_e2 = sw.generator(0, 2, kEach);
  to_e1.rate_fps = to_e2.rate_fps = 10'000;
  AlternatingFrontend s(to_e1, to_e2);
  sw.start_with(0, s);
  // 1 s at the nominal rate; the generator drops its schedule after each stall of its
  // thread rather than catching up, so a loaded machine stretches the flow.
  ASSERT_TRUE(eventually([&] { return sw.gen(2).received == kEach; }, 60s))
      << "e2 received " << sw.gen(2).received << " of " << kEach << "; e0 read " << s.sent.load()
      << " frames from its frontend";
  sw.stop(0);
  sw.stop(2);
  const EndpointCounters a = sw.counters(0);
  EXPECT_EQ(s.sent.load(), 2 * kEach);
  EXPECT_EQ(sw.gen(2).lost, 0u);
  EXPECT_EQ(sw.gen(2).out_of_order, 0u);
  EXPECT_EQ(a.peers[2].out_frames, kEach);
  EXPECT_EQ(a.peers[1].stalled, 0u) << "e1 is full, not stalled: the stall timeout has not passed";
  // Every frame for e1 is in its channel or a counted drop (a held one when e0 stopped).
  EXPECT_EQ(a.peers[1].out_frames + sw.drops(0, DropReason::kPeerFull) + sw.drops(0, DropReason::kEndpointStopped),
            kEach);
  EXPECT_GT(sw.drops(0, DropReason::kPeerFull), kEach / 2);
}

// A frame held for a full channel waits a short while, not the stall timeout: then it is
// dropped (peer_full) and the frontend's later frames are not held behind it.
TEST(EndpointLoop, AHeldFrameIsDroppedAfterAShortWait) {
  TestSwitch sw(2, "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 60000\n");
  constexpr std::uint64_t kFrames = 200;  // far more than an 8 KiB channel holds
  sw.start(0, sw.generator(0, 1, kFrames));  // e1 never runs
  ASSERT_TRUE(eventually([&] { return sw.gen(0).sent == kFrames; }, 10s)) << "sent " << sw.gen(0).sent;
  // The last held frame goes within the hold (milliseconds), far inside the stall timeout.
  ASSERT_TRUE(eventually([&] {
    const EndpointCounters a = sw.counters(0);
    return a.peers[1].out_frames + sw.drops(0, DropReason::kPeerFull) == kFrames;
  }, 5s)) << "out " << sw.counters(0).peers[1].out_frames << " peer_full " << sw.drops(0, DropReason::kPeerFull);
  sw.stop(0);
  EXPECT_EQ(sw.counters(0).peers[1].stalled, 0u);
  EXPECT_EQ(sw.drops(0, DropReason::kEndpointStopped), 0u) << "nothing was still held";
  EXPECT_GT(sw.counters(0).forwarding.backpressure_waits, 0u);
}

// A stalled peer is taken back only once it has freed a good part of its channel: one
// record consumed is not enough (no flapping between stalled and not on every record).
TEST(EndpointLoop, AStalledPeerComesBackOnlyAfterFreeingRealRoom) {
  TestSwitch sw(2, "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 50\n");
  sw.start(0, sw.generator(0, 1, 0));  // e1 never runs: the test consumes its channel by hand
  ASSERT_TRUE(eventually([&] { return sw.counters(0).peers[1].stalled == 1; }));
  shm::FrameConsumer in = sw.consumer(0, 1);
  ASSERT_EQ(in.peek().status, shm::Pop::kRecord);
  in.consume();
  in.release();  // one record's room (at most 1.5 KiB of 8 KiB)
  const auto out_before = sw.counters(0).peers[1].out_frames;
  const auto deadline = std::chrono::steady_clock::now() + 300ms;
  while (std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(sw.counters(0).peers[1].stalled, 1u) << "one consumed record took the peer back";
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(sw.counters(0).peers[1].out_frames, out_before) << "nothing goes to a stalled peer";
  // The peer drains its channel: it is taken back and frames flow again.
  while (in.peek().status == shm::Pop::kRecord) in.consume();
  in.release();
  ASSERT_TRUE(eventually([&] { return sw.counters(0).peers[1].out_frames > out_before; }));
  sw.stop(0);
}

// A receiver whose frontend never takes a frame (kRetryLater: a guest with no receive
// buffer) holds its inbound channels for a bounded time only (the stall timeout): then
// their records are dropped and counted (guest_not_ready), so the channels keep moving;
// once the frontend takes frames again they are delivered.
TEST(EndpointLoop, AFrontendThatTakesNothingDelaysItsChannelsOnlyForAWhile) {
  TestSwitch sw(2, "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 100\n");
  WithholdingFrontend r;
  sw.start_with(1, r);
  sw.start(0, sw.generator(0, 1, 0));
  ASSERT_TRUE(eventually([&] { return sw.drops(1, DropReason::kGuestNotReady) > 1000; }, 10s))
      << "e1 dropped " << sw.drops(1, DropReason::kGuestNotReady);
  EXPECT_TRUE(eventually([&] { return sw.counters(0).peers[1].out_frames > 1000u; }, 10s)) << "the channel moved on";
  r.take = true;
  ASSERT_TRUE(eventually([&] { return r.delivered.load() > 1000; }, 10s));
  sw.stop(0);
  sw.stop(1);
}

// Puts a record into `out` as endpoint `from` would for `to`: the virtio-net header `h` in
// front of a 60-byte test frame from `from`'s address to `to`'s. Publishes nothing.
shm::Reserve push_record(shm::FrameProducer& out, const TestSwitch& sw, std::size_t from, std::size_t to,
                         const endpoints::virtio::NetHeader& h, std::uint64_t sequence) {
  namespace virtio = endpoints::virtio;
  std::vector<std::byte> record(virtio::kNetHeaderBytes + endpoints::generator::kMinFrame);
  virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(record.data(), virtio::kNetHeaderBytes));
  const bool written = endpoints::generator::write_test_frame(
      std::span<std::byte>(record).subspan(virtio::kNetHeaderBytes), sw.mac(to).bytes, sw.mac(from).bytes,
      {static_cast<std::uint32_t>(from), sequence});
  EXPECT_TRUE(written);
  return out.try_push(record);
}

// What a guest's receive queue shows, in memory a forked predecessor and its successor
// share (MAP_SHARED): the used index as published and the sequence number of every frame
// behind it, in order.
struct SharedGuest {
  std::uint16_t used = 0;
  std::uint32_t frames = 0;
  std::array<std::uint64_t, 512> sequence{};
};

// A vhost-user guest as the delivery journal sees it: deliver() stages a frame behind the
// next used index; commit_deliveries() (and flush()) publish them into SharedGuest. With
// `kill_at_commit` = n, the n-th commit that has frames to publish ends the process
// (_exit, as kill -9 would, nothing unwound) before publishing (kBeforePublish) or just
// after (kAfterPublish). take_delivery_restart() reports the guest's used index once, as
// QEMU restarts the queue there after a reconnect.
class JournalingGuest final : public Frontend {
 public:
  enum class Kill : std::uint8_t { kNever, kBeforePublish, kAfterPublish };
  JournalingGuest(SharedGuest& guest, Kill kill, int kill_at_commit, bool absent = false)
      : guest_(guest), kill_(kill), kill_at_(kill_at_commit), next_used_(guest.used), absent_(absent) {}
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte>, std::uint64_t) noexcept override { return {Rx::kNone}; }
  [[nodiscard]] bool may_defer_delivery() const noexcept override { return true; }
  Delivery deliver(const endpoints::virtio::CheckedNetHeader&, std::span<const std::byte> frame, FrameAddresses,
                   PortId, std::uint64_t&) noexcept override {
    // Its front-end has not come back: the first frames dropped (as past the wait), the
    // rest wait (as within it).
    if (absent_) return ++absent_calls_ <= 10 ? Delivery::kNoGuest : Delivery::kRetryLater;
    const auto id = endpoints::generator::check_test_frame(frame);
    staged_.push_back(id ? id.value().sequence : ~std::uint64_t{0});
    ++next_used_;
    return Delivery::kDelivered;
  }
  [[nodiscard]] bool journals_deliveries() const noexcept override { return true; }
  [[nodiscard]] std::optional<std::uint16_t> delivery_mark() noexcept override {
    if (absent_) return std::nullopt;
    return next_used_;
  }
  void commit_deliveries() noexcept override {
    if (staged_.empty()) return;
    const bool kill = kill_ != Kill::kNever && ++commits_ == kill_at_;
    if (kill && kill_ == Kill::kBeforePublish) ::_exit(0);
    for (const std::uint64_t q : staged_) guest_.sequence.at(guest_.frames++) = q;
    guest_.used = next_used_;
    staged_.clear();
    if (kill) ::_exit(0);
  }
  void flush() noexcept override { commit_deliveries(); }
  std::optional<std::uint16_t> take_delivery_restart() noexcept override {
    if (restart_taken_ || absent_) return std::nullopt;
    restart_taken_ = true;
    return guest_.used;
  }

 private:
  SharedGuest& guest_;
  Kill kill_;
  int kill_at_;
  int commits_ = 0;
  std::uint16_t next_used_;
  std::vector<std::uint64_t> staged_;
  bool absent_;
  int absent_calls_ = 0;
  bool restart_taken_ = false;
};

// kill -9 of a vhost-user endpoint at each step of a commit (delivery_journal.hpp): after
// the journal, before the guest's used index shows the frames; and after it shows them,
// before the channel's space is released. Its successor, once the guest's receive queue
// restarts where the used index stands, delivers every record of the channel exactly once:
// the guest ends up with 0, 1, ..., n-1, nothing missing, nothing twice.
TEST(EndpointDeliveryJournal, AKillAtAnyStepOfACommitLosesAndRepeatsNothing) {
  namespace virtio = endpoints::virtio;
  for (const auto kill : {JournalingGuest::Kill::kBeforePublish, JournalingGuest::Kill::kAfterPublish}) {
    SCOPED_TRACE(kill == JournalingGuest::Kill::kBeforePublish ? "killed before the used index"
                                                                : "killed after the used index");
    TestSwitch sw(2, "ring_bytes = 1048576\n");
    void* mem = ::mmap(nullptr, sizeof(SharedGuest), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    auto* guest = new (mem) SharedGuest();
    shm::FrameProducer out = sw.producer(0, 1);  // e0 never runs: the test sends for it
    constexpr std::uint64_t kFrames = 200;  // kInboundBudget a pass: several commits
    for (std::uint64_t i = 0; i < kFrames; ++i)
      ASSERT_EQ(push_record(out, sw, 0, 1, virtio::NetHeader{}, i), shm::Reserve::kReserved);
    out.publish();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // The predecessor: killed at its second commit with frames, mid-stream.
      JournalingGuest g(*guest, kill, 2);
      EndpointLoop loop(sw.resources(1, -1, -1), g);
      for (int i = 0; i < 1000; ++i) loop.poll_once();
      ::_exit(3);  // never killed: the test fails below
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the predecessor was not killed at its commit";
    ASSERT_GT(guest->frames, 0u);
    ASSERT_LT(guest->frames, kFrames) << "killed after the last frame: nothing to recover";
    // The successor: the same channel and slice, the guest's queue restarting at its used index.
    JournalingGuest g(*guest, JournalingGuest::Kill::kNever, 0);
    ASSERT_TRUE(sw.poll_until(1, g, [&] { return guest->frames >= kFrames; }, 5s));
    EXPECT_EQ(guest->frames, kFrames);
    for (std::uint32_t i = 0; i < guest->frames; ++i) EXPECT_EQ(guest->sequence.at(i), i) << "frame " << i;
    EXPECT_EQ(sw.counters(1).loop.restart_skips, kill == JournalingGuest::Kill::kAfterPublish ? 1u : 0u);
    ::munmap(mem, sizeof(SharedGuest));
  }
}

// A second kill before the guest is back: the first successor has no guest (it drops a
// few frames, counted, as for an absent guest, and keeps the rest waiting) and is killed
// in turn. The third process still knows what the first had published: nothing reaches
// the guest twice.
TEST(EndpointDeliveryJournal, ASecondKillBeforeTheGuestIsBackRepeatsNothing) {
  namespace virtio = endpoints::virtio;
  TestSwitch sw(2, "ring_bytes = 1048576\n");
  void* mem = ::mmap(nullptr, sizeof(SharedGuest), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* guest = new (mem) SharedGuest();
  shm::FrameProducer out = sw.producer(0, 1);  // e0 never runs: the test sends for it
  constexpr std::uint64_t kFrames = 300;
  for (std::uint64_t i = 0; i < kFrames; ++i)
    ASSERT_EQ(push_record(out, sw, 0, 1, virtio::NetHeader{}, i), shm::Reserve::kReserved);
  out.publish();
  const auto run_killed = [&](JournalingGuest::Kill kill, bool absent, int passes) {
    const pid_t child = ::fork();
    if (child == 0) {
      JournalingGuest g(*guest, kill, 2, absent);
      EndpointLoop loop(sw.resources(1, -1, -1), g);
      for (int i = 0; i < passes; ++i) loop.poll_once();
      ::_exit(0);  // killed: nothing unwound, nothing more released
    }
    int status = 0;
    return child > 0 && ::waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  ASSERT_TRUE(run_killed(JournalingGuest::Kill::kAfterPublish, false, 1000));  // published, not released
  const std::uint32_t seen = guest->frames;
  ASSERT_GT(seen, 0u);
  ASSERT_TRUE(run_killed(JournalingGuest::Kill::kNever, true, 1));  // one pass without a guest
  JournalingGuest g(*guest, JournalingGuest::Kill::kNever, 0);
  int passes = 0;  // enough to drain the channel: 64 records a pass
  ASSERT_TRUE(sw.poll_until(1, g, [&] { return ++passes > 100; }, 5s));
  ASSERT_GT(guest->frames, seen) << "the third process delivered again";
  for (std::uint32_t i = 1; i < guest->frames; ++i)
    EXPECT_LT(guest->sequence.at(i - 1), guest->sequence.at(i)) << "frame " << i << ": repeated or out of order";
  ::munmap(mem, sizeof(SharedGuest));
}

// Wake-up coalescing (coalesce_us): frames published one at a time, 200 us apart, reach a
// receiver that coalesces over 2 ms in batches taken on its timer: it sleeps far fewer
// times than it gets frames, and fewer than the same receiver without coalescing (no
// poll window either way), loses none and keeps their order. Once the flow stops it goes
// back to sleeping until woken: an idle endpoint runs no timer.
TEST(EndpointCoalescing, ADenseFlowIsTakenInBatchesOnTheTimerAndIdleRunsNoTimer) {
  namespace virtio = endpoints::virtio;
  std::uint64_t coalesced_sleeps = 0;
  bool sender_late = false;  // the schedule slipped: the flow came in bursts, not evenly
  for (const bool coalesce : {true, false}) {
    SCOPED_TRACE(coalesce ? "coalesce_us = 2000" : "coalesce_us = 0");
    // A ring that holds the whole flow: a receiver descheduled for a while loses nothing.
    TestSwitch sw(2, "ring_bytes = 65536\nmax_frame = 1500\nstall_timeout_ms = 5000\n", "",
                  {"", coalesce ? "poll_max_us = 0\ncoalesce_us = 2000\n" : "poll_max_us = 0\n"});
    sw.start(1, sw.receiver(1));
    shm::FrameProducer out = sw.producer(0, 1);  // e0 never runs: the test sends for it
    constexpr std::uint64_t kFrames = 300;
    std::uint64_t sent = 0;
    std::uint64_t sleeps = 0;
    EndpointCounters c{};
    // The receiver sees a dense flow only when it finds each frame within 2 ms of running
    // out: a machine loaded enough to keep it off its core longer than that breaks the
    // flow into lone frames, and it never coalesces. Up to three flows are sent, the next
    // only when the last one was never coalesced (each flow's frames still all arrive,
    // in order).
    for (int flow = 0; flow < (coalesce ? 3 : 1); ++flow) {
      const std::uint64_t sleeps_before = sw.counters(1).loop.sleeps;
      const auto start = std::chrono::steady_clock::now();
      for (std::uint64_t i = 0; i < kFrames; ++i) {
        // The flow's shape: one frame every 200 us on a fixed schedule (a late wake-up of
        // this thread sends the frames that are due at once: more batching, never less).
        std::this_thread::sleep_until(start + i * 200us);
        if (std::chrono::steady_clock::now() - (start + i * 200us) > 1ms) sender_late = true;
        ASSERT_EQ(push_record(out, sw, 0, 1, virtio::NetHeader{}, sent), shm::Reserve::kReserved);
        ++sent;
        out.publish();
      }
      ASSERT_TRUE(eventually([&] { return sw.gen(1).received == sent; }));
      c = sw.counters(1);
      sleeps = c.loop.sleeps - sleeps_before;
      if (c.loop.timed_sleeps != 0) break;
    }
    EXPECT_EQ(sw.gen(1).lost, 0u);
    EXPECT_EQ(sw.gen(1).out_of_order, 0u);
    EXPECT_EQ(sw.total_drops(1), 0u);
    if (coalesce) {
      EXPECT_GT(c.loop.timed_sleeps, 0u) << "none of three flows was taken on the timer";
      // ~10 frames per 2 ms timer.
      EXPECT_LT(sleeps, kFrames / 3) << "sleeps per frame with coalescing";
      coalesced_sleeps = sleeps;
    } else {
      EXPECT_EQ(c.loop.timed_sleeps, 0u);
      // The reference: woken for (nearly) every frame, when the frames came evenly (a
      // loaded machine that ran this thread late sent bursts, which batch by themselves).
      if (!sender_late) {
        EXPECT_GT(sleeps, coalesced_sleeps) << "coalescing saved no wake-up";
      }
    }
    // Idle after the flow: at most the one timed sleep that found nothing, then none.
    ASSERT_TRUE(eventually([&] {
      const auto s = sw.counters(1).loop.sleeps;
      std::this_thread::sleep_for(50ms);
      return sw.counters(1).loop.sleeps == s;
    }));
    const auto idle = sw.counters(1).loop;
    std::this_thread::sleep_for(200ms);  // the observation window, not synchronisation
    EXPECT_EQ(sw.counters(1).loop.sleeps, idle.sleeps) << "an idle endpoint must not wake up";
    // A frame after the quiet spell wakes it (it asked to be woken again).
    ASSERT_EQ(push_record(out, sw, 0, 1, virtio::NetHeader{}, sent), shm::Reserve::kReserved);
    out.publish();
    ASSERT_TRUE(eventually([&] { return sw.gen(1).received == sent + 1; }));
    EXPECT_EQ(sw.counters(1).loop.timed_sleeps, idle.timed_sleeps);
    sw.stop(1);
  }
}

// A receiver that coalesces may sleep on its timer longer than a sender's hold lasts:
// its channels ask that a sender who finds one full ring it (wake_on_full), and a sender
// whose frame is held for a full channel does, once it has published what filled it. A
// receiver that does not coalesce is not rung for that (it arms when it sleeps).
TEST(EndpointCoalescing, ASenderThatFindsTheChannelFullRingsACoalescingReceiver) {
  for (const bool coalescing : {false, true}) {
    SCOPED_TRACE(coalescing ? "receiver coalesces" : "receiver does not coalesce");
    TestSwitch sw(2, kTinyRings);
    const std::uint64_t rings_before = sw.doorbell_rings(1);
    // e1 never runs: the test stands for it, with or without the request in its channel.
    shm::FrameConsumer e1 = sw.consumer(0, 1);
    e1.set_wake_on_full(coalescing);
    sw.start(0, sw.generator(0, 1, 200));
    ASSERT_TRUE(eventually([&] { return sw.counters(0).forwarding.backpressure_waits > 0; }));
    if (coalescing) {
      EXPECT_TRUE(eventually([&] { return sw.doorbell_rings(1) > rings_before; }));
    } else {
      // The generator's 200 frames are sent or dropped within the hold (5 ms) of the last.
      ASSERT_TRUE(eventually([&] { return sw.gen(0).sent == 200; }));
      std::this_thread::sleep_for(20ms);  // the observation window, not synchronisation
      EXPECT_EQ(sw.doorbell_rings(1), rings_before) << "rang a receiver that did not ask";
    }
    sw.stop(0);
  }
}

// Takes every frame and keeps the flags of each header it was handed.
class FlagRecordingFrontend final : public Frontend {
 public:
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte>, std::uint64_t) noexcept override { return {Rx::kNone}; }
  Delivery deliver(const endpoints::virtio::CheckedNetHeader& header, std::span<const std::byte>, FrameAddresses,
                   PortId, std::uint64_t&) noexcept override {
    flags.push_back(header->flags);
    return Delivery::kDelivered;
  }
  std::vector<unsigned> flags;
};

// Another endpoint is trusted with no claim about its frames: a header from a channel
// that says the checksum was verified (DATA_VALID) or the frame coalesced (RSC_INFO)
// reaches the frontend without that flag, and the frame is still delivered with the rest
// of its header (NEEDS_CSUM kept).
TEST(EndpointLoop, APeersReceiveOnlyFlagsNeverReachTheFrontend) {
  namespace virtio = endpoints::virtio;
  TestSwitch sw(2, kTinyRings);
  shm::FrameProducer out = sw.producer(1, 0);  // e1 never runs: the test sends for it
  virtio::NetHeader data_valid, rsc_info, all;
  data_valid.flags = virtio::kNetHdrFlagDataValid;
  rsc_info.flags = virtio::kNetHdrFlagRscInfo;
  all.flags = virtio::kNetHdrFlagNeedsCsum | virtio::kNetHdrFlagDataValid | virtio::kNetHdrFlagRscInfo;
  all.csum_start = 34;
  all.csum_offset = 16;
  ASSERT_EQ(push_record(out, sw, 1, 0, data_valid, 0), shm::Reserve::kReserved);
  ASSERT_EQ(push_record(out, sw, 1, 0, rsc_info, 1), shm::Reserve::kReserved);
  ASSERT_EQ(push_record(out, sw, 1, 0, all, 2), shm::Reserve::kReserved);
  out.publish();
  FlagRecordingFrontend f;
  ASSERT_TRUE(sw.poll_until(0, f, [&] { return f.flags.size() == 3; }, 10s)) << "delivered " << f.flags.size();
  EXPECT_EQ(f.flags[0], 0) << "DATA_VALID from a peer";
  EXPECT_EQ(f.flags[1], 0) << "RSC_INFO from a peer";
  EXPECT_EQ(f.flags[2], virtio::kNetHdrFlagNeedsCsum) << "only DATA_VALID and RSC_INFO are cleared";
}

// A port's mtu holds frames that are not GSO to mtu + 18 bytes both ways: what its
// frontend sends above that is dropped before it is forwarded, what its peers send above
// that is dropped before it is delivered, each counted as mtu_exceeded where it was
// dropped. Everything else passes.
TEST(EndpointMtu, FramesAboveThePortsMtuAreDroppedBothWays) {
  TestSwitch sw(2, "ring_bytes = 65536\nmax_frame = 1500\nstall_timeout_ms = 5000\n", "mtu = 1000\n");
  ASSERT_EQ(sw.topology().endpoints[0].frame_limit(), 1018u);
  // Sizes 60, 1400, 300 in turn: every third frame is above e0's limit. The generator
  // sends at full speed: what the receiver's channel has no room for is a full drop.
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, 1, 3000));
  ASSERT_TRUE(eventually([&] {
    return sw.drops(0, DropReason::kMtuExceeded) == 1000 && sw.gen(1).received + full_drops(sw, 0) == 2000;
  })) << "received " << sw.gen(1).received << ", full " << full_drops(sw, 0) << ", mtu drops "
      << sw.drops(0, DropReason::kMtuExceeded);
  sw.stop(0);
  sw.stop(1);
  EXPECT_EQ(sw.counters(0).peers[1].out_frames, sw.gen(1).received) << "no frame above the mtu was forwarded";
  EXPECT_EQ(sw.counters(0).traffic.rx_frames, 3000u) << "read from the frontend, then dropped";
  EXPECT_EQ(sw.total_drops(0), 1000u + full_drops(sw, 0));

  TestSwitch back(2, "ring_bytes = 65536\nmax_frame = 1500\nstall_timeout_ms = 5000\n", "mtu = 1000\n");
  back.start(0, back.receiver(0));
  back.start(1, back.generator(1, 0, 3000));
  // Every frame the sender put in the channel was either delivered or dropped for its
  // size at e0; none above e0's limit was delivered.
  ASSERT_TRUE(eventually([&] {
    const std::uint64_t sent = back.counters(1).peers[0].out_frames;
    return full_drops(back, 1) + sent == 3000 &&
           back.gen(0).received + back.drops(0, DropReason::kMtuExceeded) == sent;
  })) << "sent " << back.counters(1).peers[0].out_frames << ", received " << back.gen(0).received << ", mtu drops "
      << back.drops(0, DropReason::kMtuExceeded);
  back.stop(1);
  back.stop(0);
  EXPECT_GT(back.drops(0, DropReason::kMtuExceeded), 0u);
  EXPECT_EQ(back.counters(0).traffic.tx_frames, back.gen(0).received);
  EXPECT_EQ(back.drops(1, DropReason::kMtuExceeded), 0u) << "the sender's port has no mtu";
}

// A GSO frame is held to the port's mtu by its segments (gso_size past the headers), not
// by its length: the Linux bridge forwards GSO frames above a device's MTU too.
TEST(EndpointMtu, AGsoFrameIsHeldByItsSegmentsNotItsLength) {
  namespace virtio = endpoints::virtio;
  TestSwitch sw(2, kTinyRings, "mtu = 1000\n");
  shm::FrameProducer out = sw.producer(1, 0);  // e1 never runs: the test sends for it
  auto push = [&](const virtio::NetHeader& h, std::uint64_t sequence) {
    std::vector<std::byte> record(virtio::kNetHeaderBytes + 1400);
    virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(record.data(), virtio::kNetHeaderBytes));
    ASSERT_TRUE(endpoints::generator::write_test_frame(std::span<std::byte>(record).subspan(virtio::kNetHeaderBytes),
                                                       sw.mac(0).bytes, sw.mac(1).bytes, {1, sequence}));
    ASSERT_EQ(out.try_push(record), shm::Reserve::kReserved);
  };
  virtio::NetHeader gso;
  gso.flags = virtio::kNetHdrFlagNeedsCsum;
  gso.gso_type = virtio::kGsoTcpV4;
  gso.gso_size = 500;
  gso.hdr_len = 54;
  gso.csum_start = 34;
  gso.csum_offset = 16;
  push(gso, 0);
  push(virtio::NetHeader{}, 1);
  gso.gso_type = virtio::kGsoTcpV4 | virtio::kGsoEcn;
  push(gso, 2);
  out.publish();
  FlagRecordingFrontend f;
  EndpointLoop loop(sw.resources(0, -1, -1), f);  // pass by pass on this thread
  for (int pass = 0; pass < 100 && f.flags.size() < 2; ++pass) loop.poll_once();
  loop.publish_stats();
  EXPECT_EQ(f.flags.size(), 2u) << "both GSO frames delivered";
  EXPECT_EQ(sw.drops(0, DropReason::kMtuExceeded), 1u) << "the plain frame of the same size dropped";
  EXPECT_EQ(sw.counters(0).peers[1].in_frames, 3u);
}

using test_support::ScriptedFrontend;
namespace virtio = endpoints::virtio;

// A record (header, frame) of `bytes` frame bytes from `src` to `dst`, with an 802.1Q tag
// of `vid` after the addresses when given, and a TCP/IPv4 GSO header whose checksum
// offsets point at the TCP header (34 bytes in untagged, 38 tagged).
std::vector<std::byte> vlan_record(const MacAddress& dst, const MacAddress& src, std::optional<std::uint16_t> vid,
                                   std::size_t bytes, bool gso) {
  std::vector<std::byte> r(virtio::kNetHeaderBytes + bytes);
  virtio::NetHeader h;
  const std::uint16_t tag = vid ? 4 : 0;
  if (gso) {
    h.flags = virtio::kNetHdrFlagNeedsCsum;
    h.gso_type = virtio::kGsoTcpV4;
    h.gso_size = 500;
    h.hdr_len = static_cast<std::uint16_t>(54 + tag);
    h.csum_start = static_cast<std::uint16_t>(34 + tag);
    h.csum_offset = 16;
  }
  h.num_buffers = 0x5a5a;  // whatever a guest leaves there: the switch owns the field
  virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(r.data(), virtio::kNetHeaderBytes));
  std::byte* f = r.data() + virtio::kNetHeaderBytes;
  std::memcpy(f, dst.bytes.data(), 6);
  std::memcpy(f + 6, src.bytes.data(), 6);
  std::size_t at = 12;
  if (vid) {
    f[12] = std::byte{0x81};
    f[13] = std::byte{0x00};
    f[14] = static_cast<std::byte>(*vid >> 8);
    f[15] = static_cast<std::byte>(*vid & 0xff);
    at = 16;
  }
  f[at] = std::byte{0x08};
  f[at + 1] = std::byte{0x00};
  for (std::size_t i = at + 2; i < bytes; ++i) f[i] = static_cast<std::byte>(i * 7);
  return r;
}
// The frame of a record as the test frontend kept it, and its header.
std::span<const std::byte> frame_of(const std::vector<std::byte>& r) {
  return std::span<const std::byte>(r).subspan(virtio::kNetHeaderBytes);
}
virtio::NetHeader header_of(const std::vector<std::byte>& r) {
  auto h = virtio::parse(r);
  EXPECT_TRUE(h.has_value());
  return h ? h.value().get() : virtio::NetHeader{};
}

// Runs the loops of the given endpoints pass by pass on this thread (each with its
// frontend) until `done()` or 2000 passes; then publishes their counters.
bool run_loops(TestSwitch& sw, std::vector<std::pair<std::size_t, Frontend*>> eps, const std::function<bool()>& done) {
  std::vector<std::unique_ptr<EndpointLoop>> loops;
  for (auto& [i, f] : eps) loops.push_back(std::make_unique<EndpointLoop>(sw.resources(i, -1, -1), *f));
  bool ok = false;
  for (int pass = 0; pass < 2000 && !(ok = done()); ++pass)
    for (auto& l : loops) l->poll_once();
  for (auto& l : loops) l->publish_stats(true);
  return ok;
}

// e0 (through l0) sends twelve 1000-byte frames to e1, which never runs: e0's 8 KiB
// channel to it (kTinyRings) fills, and e0 holds the frame that did not fit. Returns e0's
// counters then. One pass: every further pass gives the 5 ms hold a chance to run out (a
// test thread kept off its core that long would see a peer_full drop instead).
EndpointCounters hold_a_frame_for_e1(TestSwitch& sw, ScriptedFrontend& e0, EndpointLoop& l0) {
  for (int i = 0; i < 12; ++i) e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 1000, false));
  l0.poll_once();
  l0.publish_stats();
  return sw.counters(0);
}

// Access ports (vlan = N): frames reach the ports of their VLAN only, floods included,
// and leave untagged; each VLAN learns its own addresses.
TEST(EndpointVlan, AccessPortsReachTheirOwnVlanOnly) {
  TestSwitch sw(4, kTinyRings, "", {"vlan = 10\n", "vlan = 20\n", "vlan = 10\n", ""});
  ScriptedFrontend e0, e1, e2, e3;
  const MacAddress bcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
  e0.to_send.push_back(vlan_record(bcast, sw.mac(0), std::nullopt, 100, false));
  e0.to_send.push_back(vlan_record(sw.mac(2), sw.mac(0), std::nullopt, 200, false));
  e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 300, false));  // in VLAN 20: flooded in 10
  ASSERT_TRUE(run_loops(sw, {{0, &e0}, {1, &e1}, {2, &e2}, {3, &e3}}, [&] { return e2.received.size() == 3; }));
  EXPECT_TRUE(e1.received.empty()) << "VLAN 20 got a frame of VLAN 10";
  EXPECT_TRUE(e3.received.empty()) << "a VLAN-unaware port got a frame of VLAN 10";
  for (const auto& r : e2.received) {
    EXPECT_FALSE(vlan_tag(frame_of(r))) << "an access port's frames leave untagged";
    EXPECT_EQ(header_of(r).num_buffers, 0) << "the VLAN field is not handed to the frontend";
  }
  EXPECT_EQ(frame_of(e2.received[1]).size(), 200u);
}

// A reload that moves a peer to another VLAN reaches a running endpoint through its
// slice, without a restart: floods and unicast follow the peer's new VLANs (its static
// address moves with it), and what it sends in its new VLAN is taken, in its old one
// refused.
TEST(EndpointVlan, APeerMovedToAnotherVlanIsFollowedWithoutARestart) {
  TestSwitch sw(3, kTinyRings, "vlan = 10\n", {"", "vlan = 10\n", "vlan = 20\n"});
  const MacAddress bcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
  auto from_peer = [&](std::size_t from, std::uint16_t vid) {
    auto r = vlan_record(sw.mac(0), sw.mac(from), std::nullopt, 100, false);
    r[virtio::kNetHeaderBytes - 2] = static_cast<std::byte>(vid & 0xff);
    r[virtio::kNetHeaderBytes - 1] = static_cast<std::byte>(vid >> 8);
    return r;
  };
  ScriptedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  shm::FrameProducer from2 = sw.producer(2, 0);  // e1 and e2 never run: the test plays e2
  auto step = [&](std::uint16_t e2_vid) {
    // e0's frames first: what it does with e2's address is decided by the static entry
    // alone, before e2's own frame could teach it.
    e0.to_send.push_back(vlan_record(bcast, sw.mac(0), std::nullopt, 100, false));
    e0.to_send.push_back(vlan_record(sw.mac(2), sw.mac(0), std::nullopt, 100, false));
    for (int pass = 0; pass < 4; ++pass) loop.poll_once();
    ASSERT_EQ(from2.try_push(from_peer(2, e2_vid)), shm::Reserve::kReserved);
    from2.publish();
    for (int pass = 0; pass < 4; ++pass) loop.poll_once();
    loop.publish_stats(true);
  };
  step(20);  // e2 in VLAN 20: nothing of e0's reaches it, and its frame is refused
  EndpointCounters c = sw.counters(0);
  EXPECT_EQ(c.peers[1].out_frames, 2u) << "the broadcast and the frame for e2 (unknown in 10) flood to e1";
  EXPECT_EQ(c.peers[2].out_frames, 0u);
  EXPECT_EQ(c.drops[DropReason::kVlanNotAllowed], 1u);
  EXPECT_TRUE(e0.received.empty());

  sw.set_port_vlans({10, 20, 10});  // the reload: e1 to VLAN 20, e2 to VLAN 10
  step(10);
  c = sw.counters(0);
  EXPECT_EQ(c.peers[1].out_frames, 2u) << "e1 has left VLAN 10";
  EXPECT_EQ(c.peers[2].out_frames, 2u) << "the broadcast, and the frame for e2 by its static address in 10";
  EXPECT_EQ(c.forwarding.flooded, 3u) << "e2's address was not static in its new VLAN";
  EXPECT_EQ(c.drops[DropReason::kVlanNotAllowed], 1u);
  ASSERT_EQ(e0.received.size(), 1u) << "e2's frame in its new VLAN";

  step(20);  // a frame still in e2's old VLAN: refused
  EXPECT_EQ(sw.counters(0).drops[DropReason::kVlanNotAllowed], 2u);
}

// A port a reload takes from one endpoint (removed) and gives to another (added, fabric.
// spare_ports): vswitchd rewrites the port table (StatsSlice::write_port_table), and every
// other endpoint drops the static entry of the address that left with the first endpoint
// and makes the second's static, without a restart. Frames for the old address must not
// be sent to the port's new endpoint as if it were still the old one's.
TEST(EndpointPorts, APortGivenToAnotherEndpointTradesItsStaticAddress) {
  TestSwitch sw(3, kTinyRings);
  ScriptedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  const MacAddress newcomer{{0x02, 0, 0, 0, 0, 0x99}};
  auto send_to = [&](const MacAddress& dst) {
    e0.to_send.push_back(vlan_record(dst, sw.mac(0), std::nullopt, 100, false));
    for (int pass = 0; pass < 4; ++pass) loop.poll_once();
    loop.publish_stats(true);
    return sw.counters(0);
  };
  EndpointCounters c = send_to(sw.mac(2));
  EXPECT_EQ(c.peers[2].out_frames, 1u) << "e2's static address";
  EXPECT_EQ(c.peers[1].out_frames, 0u);
  EXPECT_EQ(c.forwarding.flooded, 0u);

  // e2's endpoint removed: its port is in no VLAN and has no address.
  std::vector<PortInfo> ports{port_info(sw.topology().endpoints[0]), port_info(sw.topology().endpoints[1]), PortInfo{}};
  sw.set_ports(ports);
  c = send_to(sw.mac(2));
  EXPECT_EQ(c.peers[2].out_frames, 1u) << "nothing for a port in no VLAN";
  EXPECT_EQ(c.peers[1].out_frames, 1u) << "an address no port has any more: flooded";
  EXPECT_EQ(c.forwarding.flooded, 1u);

  // The port given to a new endpoint with an address of its own.
  ports[2].vlans.set(0);
  ports[2].mac = newcomer;
  sw.set_ports(ports);
  c = send_to(newcomer);
  EXPECT_EQ(c.peers[2].out_frames, 1u) << "the newcomer's address is static on the port (its counts from 0)";
  EXPECT_EQ(c.peers[1].out_frames, 1u);
  EXPECT_EQ(c.forwarding.flooded, 1u);
  c = send_to(sw.mac(2));
  EXPECT_EQ(c.forwarding.flooded, 2u) << "the old endpoint's address is not the port's";
  EXPECT_EQ(c.peers[1].out_frames, 2u);

  // In one change, the newcomer's address moves to a lower port (1, given to the newcomer
  // as port 2 is taken from it): static behind port 1, whichever port is followed first.
  ports[1].mac = newcomer;
  ports[2] = PortInfo{};
  sw.set_ports(ports);
  c = send_to(newcomer);
  EXPECT_EQ(c.peers[1].out_frames, 3u) << "the address is static behind the port it moved to";
  EXPECT_EQ(c.peers[2].out_frames, 2u);
  EXPECT_EQ(c.forwarding.flooded, 2u) << "not flooded: still static, not lost in the move";
}

// A unicast flow to e1 lets e0 read frontend frames straight into e1's channel while e1
// is the one peer e0 can reach. Once e1 has left e0's VLAN, no frame of e0's VLAN may be
// read into e1's channel any more (e1's process maps it): not even a reservation that is
// never committed.
TEST(EndpointVlan, NoFrameIsReadIntoTheChannelOfAPeerThatLeftTheVlan) {
  TestSwitch sw(3, kTinyRings, "vlan = 10\n", {"", "vlan = 10\n", "vlan = 20\n"});
  ScriptedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 100, false));
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats(true);
  ASSERT_EQ(sw.counters(0).peers[1].out_frames, 1u);
  sw.set_port_vlans({10, 20, 10});  // e1 leaves VLAN 10, e2 joins it: still one peer to reach
  auto secret = vlan_record(sw.mac(2), sw.mac(0), std::nullopt, 600, false);
  for (std::size_t i = virtio::kNetHeaderBytes + 14; i < secret.size(); ++i) secret[i] = std::byte{0xA5};
  e0.to_send.push_back(secret);
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats(true);
  EXPECT_EQ(sw.counters(0).peers[2].out_frames, 1u);
  EXPECT_EQ(sw.counters(0).peers[1].out_frames, 1u);
  // e1's channel memory: no run of the frame's bytes anywhere in it.
  const std::span<std::byte> e1_channel = sw.channel_data(0, 1);
  const std::vector<std::byte> run(64, std::byte{0xA5});
  EXPECT_EQ(std::search(e1_channel.begin(), e1_channel.end(), run.begin(), run.end()), e1_channel.end())
      << "a frame of VLAN 10 was read into the channel of a port now in VLAN 20";
}

// A frame held for a peer whose channel is full is not handed to it once the peer has
// left the frame's VLAN: it is dropped as vlan_not_allowed.
TEST(EndpointVlan, AFrameHeldForAPeerThatLeftTheVlanIsDropped) {
  TestSwitch sw(2, kTinyRings, "vlan = 10\n", {"", "vlan = 10\n"});
  ScriptedFrontend e0;
  EndpointLoop l0(sw.resources(0, -1, -1), e0);
  const EndpointCounters held = hold_a_frame_for_e1(sw, e0, l0);
  ASSERT_LT(held.peers[1].out_frames, 12u) << "the channel never filled";
  ASSERT_EQ(held.forwarding.backpressure_waits, 1u) << "no frame held";
  sw.set_port_vlans({10, 20});
  shm::FrameConsumer drain = sw.consumer(0, 1);  // room in e1's channel from now on
  while (drain.peek().status == shm::Pop::kRecord) drain.consume();
  drain.release();
  for (int pass = 0; pass < 4; ++pass) l0.poll_once();
  l0.publish_stats(true);
  const EndpointCounters after = sw.counters(0);
  EXPECT_EQ(after.peers[1].out_frames, held.peers[1].out_frames) << "the held frame went to a port out of its VLAN";
  EXPECT_EQ(after.drops[DropReason::kVlanNotAllowed], 1u);
}

// A trunk (trunk = [...]) carries its VLANs tagged: a frame from an access port gets its
// VLAN's tag on the way out, the GSO header's offsets moved with it; a tagged frame from
// the trunk loses its tag on the way to an access port, offsets moved back; a VLAN the
// trunk does not list, an untagged frame on a trunk without a vlan, and a priority tag
// on that trunk (classified as untagged) are dropped as vlan_not_allowed.
TEST(EndpointVlan, TrunksTagAndAccessPortsUntag) {
  TestSwitch sw(3, "ring_bytes = 262144\nmax_frame = 9000\nstall_timeout_ms = 5000\n", "",
                {"vlan = 10\n", "trunk = [10, 20]\n", "vlan = 20\n"});
  ScriptedFrontend access10, trunk, access20;
  access10.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 3000, true));
  trunk.to_send.push_back(vlan_record(sw.mac(2), sw.mac(1), 20, 3004, true));
  trunk.to_send.push_back(vlan_record(sw.mac(2), sw.mac(1), 30, 200, false));   // not on this trunk
  trunk.to_send.push_back(vlan_record(sw.mac(2), sw.mac(1), std::nullopt, 200, false));  // no native VLAN
  trunk.to_send.push_back(vlan_record(sw.mac(2), sw.mac(1), 0, 200, false));    // priority tag
  ASSERT_TRUE(run_loops(sw, {{0, &access10}, {1, &trunk}, {2, &access20}},
                        [&] { return trunk.received.size() == 1 && access20.received.size() == 1; }));
  const auto sent = vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 3000, true);
  const auto& tagged = trunk.received[0];
  ASSERT_EQ(frame_of(tagged).size(), 3004u);
  EXPECT_EQ(vlan_tag(frame_of(tagged)), 10);
  EXPECT_EQ(std::memcmp(frame_of(tagged).data(), frame_of(sent).data(), 12), 0) << "addresses";
  EXPECT_EQ(std::memcmp(frame_of(tagged).data() + 16, frame_of(sent).data() + 12, 3000 - 12), 0) << "the rest, whole";
  EXPECT_EQ(header_of(tagged).csum_start, 38);
  EXPECT_EQ(header_of(tagged).hdr_len, 58);
  EXPECT_EQ(header_of(tagged).gso_size, 500);

  const auto from_trunk = vlan_record(sw.mac(2), sw.mac(1), 20, 3004, true);
  const auto& untagged = access20.received[0];
  ASSERT_EQ(frame_of(untagged).size(), 3000u);
  EXPECT_FALSE(vlan_tag(frame_of(untagged)));
  EXPECT_EQ(std::memcmp(frame_of(untagged).data() + 12, frame_of(from_trunk).data() + 16, 3000 - 12), 0);
  EXPECT_EQ(header_of(untagged).csum_start, 34);
  EXPECT_EQ(header_of(untagged).hdr_len, 54);
  EXPECT_EQ(sw.drops(1, DropReason::kVlanNotAllowed), 3u);
  EXPECT_TRUE(access10.received.empty());
}

// A peer's record is not taken on its word (a hostile endpoint process can write any):
// the receiver drops a record of a VLAN it does not carry, of a VLAN the sending port is
// not in, and one of its untagged VLAN with a tag inside, counting each; it learns
// nothing from them.
TEST(EndpointVlan, APeersRecordIsHeldToBothPortsVlans) {
  TestSwitch sw(3, kTinyRings, "vlan = 10\n", {"", "vlan = 20\n", "vlan = 10\n"});
  auto with_vlan = [&](std::size_t from, std::uint16_t vid, std::optional<std::uint16_t> inner_tag) {
    auto r = vlan_record(sw.mac(0), sw.mac(from), inner_tag, 100, false);
    r[virtio::kNetHeaderBytes - 2] = static_cast<std::byte>(vid & 0xff);
    r[virtio::kNetHeaderBytes - 1] = static_cast<std::byte>(vid >> 8);
    return r;
  };
  shm::FrameProducer from20 = sw.producer(1, 0);  // e1 and e2 never run: the test writes their records
  ASSERT_EQ(from20.try_push(with_vlan(1, 20, std::nullopt)), shm::Reserve::kReserved);  // e0 is not in 20
  ASSERT_EQ(from20.try_push(with_vlan(1, 10, std::nullopt)), shm::Reserve::kReserved);  // e1 is not in 10
  from20.publish();
  shm::FrameProducer from10 = sw.producer(2, 0);
  ASSERT_EQ(from10.try_push(with_vlan(2, 10, 20)), shm::Reserve::kReserved);  // a tag inside: hopping
  ASSERT_EQ(from10.try_push(with_vlan(2, 10, std::nullopt)), shm::Reserve::kReserved);  // delivered
  from10.publish();
  ScriptedFrontend e0;
  ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] { return e0.received.size() == 1 && sw.drops(0, DropReason::kVlanNotAllowed) == 3; }))
      << "delivered " << e0.received.size() << ", vlan drops " << sw.drops(0, DropReason::kVlanNotAllowed);
  EXPECT_EQ(sw.counters(0).peers[1].in_frames, 2u);
  EXPECT_EQ(sw.counters(0).peers[2].in_frames, 2u);
  EXPECT_EQ(sw.counters(0).mac.learned, 0u) << "an address learned from a refused record";
}

// Plays a hostile peer that writes its channel while the receiver delivers: on each
// delivery it first turns the Ethernet type of the frames it finds in `channel` into
// `type` (by default an 802.1Q tag), then keeps the frame as delivered.
class TagFlippingFrontend final : public Frontend {
 public:
  explicit TagFlippingFrontend(std::span<std::byte> channel, const MacAddress& source,
                               std::array<std::byte, 2> type = {std::byte{0x81}, std::byte{0x00}})
      : channel_(channel), type_(type) {
    std::memcpy(source_.data(), source.bytes.data(), source_.size());
  }
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte>, std::uint64_t) noexcept override { return {Rx::kNone}; }
  Delivery deliver(const virtio::CheckedNetHeader&, std::span<const std::byte> frame, FrameAddresses addresses,
                   PortId, std::uint64_t&) noexcept override {
    for (auto at = channel_.begin(); (at = std::search(at, channel_.end(), source_.begin(), source_.end())) !=
                                     channel_.end();
         ++at) {
      if (channel_.end() - at < 8) break;
      at[6] = type_[0];
      at[7] = type_[1];
    }
    // As a real frontend delivers it: the checked addresses, then the rest of the frame.
    received.emplace_back(frame.begin(), frame.end());
    std::copy(addresses.begin(), addresses.end(), received.back().begin());
    return Delivery::kDelivered;
  }
  std::vector<std::vector<std::byte>> received;

 private:
  std::span<std::byte> channel_;
  std::array<std::byte, 2> type_;
  std::array<std::byte, 6> source_{};
};

// Plays a hostile peer that, while the receiver delivers its frame, rewrites the frame's
// source address in the channel to `forged`; keeps the frame as a real frontend delivers
// it (the loop's addresses, then the rest, read after the rewrite).
class SourceForgingFrontend final : public Frontend {
 public:
  SourceForgingFrontend(std::span<std::byte> channel, const MacAddress& source, const MacAddress& forged)
      : channel_(channel), source_(source), forged_(forged) {}
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte>, std::uint64_t) noexcept override { return {Rx::kNone}; }
  Delivery deliver(const virtio::CheckedNetHeader&, std::span<const std::byte> frame, FrameAddresses addresses,
                   PortId, std::uint64_t&) noexcept override {
    for (auto at = channel_.begin();
         (at = std::search(at, channel_.end(), reinterpret_cast<const std::byte*>(source_.bytes.data()),
                           reinterpret_cast<const std::byte*>(source_.bytes.data()) + 6)) != channel_.end();
         ++at)
      std::memcpy(&*at, forged_.bytes.data(), 6);
    std::vector<std::byte> f(frame.begin(), frame.end());  // read after the rewrite
    std::copy(addresses.begin(), addresses.end(), f.begin());
    received.push_back(std::move(f));
    return Delivery::kDelivered;
  }
  std::vector<std::vector<std::byte>> received;

 private:
  std::span<std::byte> channel_;
  MacAddress source_, forged_;
};

// The receiver refuses a peer's frame whose source is another port's static MAC. The
// check is made on the loop's own copy of the addresses, and that copy is what the
// frontend delivers: a peer that rewrites the source in its channel after the check
// cannot pass a frame "from" another port's station.
TEST(EndpointLoop, APeerCannotForgeAStaticSourceAfterTheCheck) {
  TestSwitch sw(3, kTinyRings);
  shm::FrameProducer from1 = sw.producer(1, 0);  // e1 never runs: the test writes its records
  ASSERT_EQ(push_record(from1, sw, 1, 0, virtio::NetHeader{}, 0), shm::Reserve::kReserved);
  from1.publish();
  SourceForgingFrontend e0(sw.channel_data(1, 0), sw.mac(1), sw.mac(2));  // e2's static MAC
  ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] { return sw.counters(0).peers[1].in_frames == 1; }));
  ASSERT_EQ(e0.received.size(), 1u);
  EXPECT_EQ(std::memcmp(e0.received[0].data() + 6, sw.mac(1).bytes.data(), 6), 0)
      << "the frame left with a source the peer wrote after the check";
}

// A frame that leaves a VLAN-aware port untagged is checked for a tag inside, and what
// the frontend is given is what was checked: the peer, which writes its channel at any
// time, cannot add the tag after the check.
TEST(EndpointVlan, ThePeerCannotTagAFrameBetweenTheCheckAndTheDelivery) {
  TestSwitch sw(2, kTinyRings, "vlan = 10\n", {"", "vlan = 10\n"});
  shm::FrameProducer from1 = sw.producer(1, 0);  // e1 never runs: the test writes its records
  auto r = vlan_record(sw.mac(0), sw.mac(1), std::nullopt, 100, false);
  r[virtio::kNetHeaderBytes - 2] = std::byte{10};  // the VLAN, in num_buffers
  r[virtio::kNetHeaderBytes - 1] = std::byte{0};
  ASSERT_EQ(from1.try_push(r), shm::Reserve::kReserved);
  from1.publish();
  TagFlippingFrontend e0(sw.channel_data(1, 0), sw.mac(1));
  ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] { return sw.counters(0).peers[1].in_frames == 1; }));
  ASSERT_EQ(e0.received.size(), 1u);
  EXPECT_FALSE(vlan_tag(e0.received[0])) << "the frame left with a tag the peer wrote after the check";
  EXPECT_EQ(std::memcmp(e0.received[0].data(), frame_of(r).data(), 100), 0);
}

// A VLAN-unaware port with an MTU lets a tagged frame be 4 bytes longer than an untagged
// one. The frame the frontend is given is the one that check saw: the peer cannot take
// the tag out afterwards and pass an untagged frame 4 bytes over the MTU. Both a frame of
// the tagged limit and a GSO frame whose segments are at it.
TEST(EndpointMtu, ThePeerCannotUntagAFrameBetweenTheMtuCheckAndTheDelivery) {
  for (const bool gso : {false, true}) {
    SCOPED_TRACE(gso ? "GSO" : "one frame");
    TestSwitch sw(2, "ring_bytes = 65536\nmax_frame = 1500\nstall_timeout_ms = 5000\n", "mtu = 1000\n");
    shm::FrameProducer from1 = sw.producer(1, 0);  // e1 never runs: the test writes its records
    // mtu + 18: the longest tagged frame; with GSO, segments of 500 + 38 + 20... at 1018.
    auto r = vlan_record(sw.mac(0), sw.mac(1), 5, gso ? 1400 : 1018, gso);
    if (gso) {
      virtio::NetHeader h = header_of(r);
      h.gso_size = static_cast<std::uint16_t>(1018 - h.csum_start - 20);
      virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(r.data(), virtio::kNetHeaderBytes));
    }
    r[virtio::kNetHeaderBytes - 2] = std::byte{0};  // VLAN-unaware ports: 0 in num_buffers
    r[virtio::kNetHeaderBytes - 1] = std::byte{0};
    ASSERT_EQ(from1.try_push(r), shm::Reserve::kReserved);
    from1.publish();
    TagFlippingFrontend e0(sw.channel_data(1, 0), sw.mac(1), {std::byte{0x08}, std::byte{0x00}});
    ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] { return sw.counters(0).peers[1].in_frames == 1; }));
    ASSERT_EQ(e0.received.size(), 1u) << "dropped as " << sw.total_drops(0);
    EXPECT_TRUE(vlan_tag(e0.received[0])) << "the frame left without the tag its length was allowed for";
    EXPECT_EQ(e0.received[0].size(), frame_of(r).size());
  }
}

// A priority-tagged frame (VID 0: a priority, no VLAN) is classified as untagged, into
// the port's untagged VLAN (IEEE 802.1Q), and travels without its tag: an access port
// and a trunk's native VLAN take it.
TEST(EndpointVlan, APriorityTaggedFrameGoesToTheUntaggedVlan) {
  TestSwitch sw(3, kTinyRings, "vlan = 10\n", {"", "vlan = 10\n", "vlan = 20\n"});
  ScriptedFrontend access10, other10, access20;
  auto prio = vlan_record(sw.mac(1), sw.mac(0), 0, 104, false);
  prio[virtio::kNetHeaderBytes + 14] = std::byte{0xa0};  // PCP 5, VID 0
  access10.to_send.push_back(prio);
  ASSERT_TRUE(run_loops(sw, {{0, &access10}, {1, &other10}, {2, &access20}}, [&] { return other10.received.size() == 1; }));
  EXPECT_FALSE(vlan_tag(frame_of(other10.received[0]))) << "left with its tag";
  EXPECT_EQ(frame_of(other10.received[0]).size(), 100u);
  EXPECT_EQ(std::memcmp(frame_of(other10.received[0]).data() + 12, frame_of(prio).data() + 16, 100 - 12), 0);
  EXPECT_TRUE(access20.received.empty());
  EXPECT_EQ(sw.drops(0, DropReason::kVlanNotAllowed), 0u);
}

// With more than one port to reach, a frame is never read into the channel of the port
// the last unicast went to: the peer maps that channel and would see (and could change)
// a frame meant for another port.
TEST(EndpointLoop, AFrameForAnotherPortNeverLiesInThePreviousPeersChannel) {
  TestSwitch sw(3, kTinyRings);
  ScriptedFrontend e0;
  e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 200, false));
  auto secret = vlan_record(sw.mac(2), sw.mac(0), std::nullopt, 200, false);
  for (std::size_t i = virtio::kNetHeaderBytes + 14; i < secret.size(); ++i) secret[i] = std::byte{0xa5};
  e0.to_send.push_back(secret);
  ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] {
    return sw.counters(0).peers[1].out_frames == 1 && sw.counters(0).peers[2].out_frames == 1;
  }));
  const std::span<std::byte> to_e1 = sw.channel_data(0, 1);
  const std::vector<std::byte> marker(100, std::byte{0xa5});
  EXPECT_EQ(std::search(to_e1.begin(), to_e1.end(), marker.begin(), marker.end()), to_e1.end())
      << "e2's frame lies in e1's channel";
  const std::span<std::byte> to_e2 = sw.channel_data(0, 2);
  EXPECT_NE(std::search(to_e2.begin(), to_e2.end(), marker.begin(), marker.end()), to_e2.end());
}

// An access port takes a frame tagged with its own VLAN (the tag comes out), but not one
// with a second tag inside: untagged at the far end, the inner tag would put it in
// another VLAN.
TEST(EndpointVlan, ADoubleTagIsRefusedAtIngress) {
  TestSwitch sw(2, kTinyRings, "vlan = 10\n", {"", "trunk = [10, 20]\n"});
  ScriptedFrontend access, trunk;
  auto single = vlan_record(sw.mac(1), sw.mac(0), 10, 104, false);
  auto dbl = single;  // [8100 10][8100 20]: the inner tag where the Ethernet type was
  const std::array<std::byte, 4> inner{std::byte{0x81}, std::byte{0x00}, std::byte{0x00}, std::byte{20}};
  dbl.insert(dbl.begin() + static_cast<std::ptrdiff_t>(virtio::kNetHeaderBytes + 16), inner.begin(), inner.end());
  access.to_send = {dbl, single};
  ASSERT_TRUE(run_loops(sw, {{0, &access}, {1, &trunk}}, [&] { return trunk.received.size() == 1; }));
  EXPECT_EQ(sw.drops(0, DropReason::kVlanNotAllowed), 1u);
  EXPECT_EQ(vlan_tag(frame_of(trunk.received[0])), 10) << "the single-tagged frame, re-tagged for the trunk";
  EXPECT_EQ(frame_of(trunk.received[0]).size(), 104u);
}

// A hostile peer's record of VLAN 10 with a tag inside (ingress never makes one) does not
// leave a trunk with two tags: refused as vlan_not_allowed (the inner tag would be taken
// for its VLAN where the outer one comes off, and the frame is 4 bytes over what the
// port's MTU allowed for one tag). A record without one is tagged and delivered.
TEST(EndpointVlan, APeersRecordWithATagInsideDoesNotLeaveATrunkWithTwo) {
  TestSwitch sw(2, kTinyRings, "trunk = [10]\nmtu = 1000\n", {"", "vlan = 10\n"});
  shm::FrameProducer from1 = sw.producer(1, 0);  // e1 never runs: the test writes its records
  auto inner = vlan_record(sw.mac(0), sw.mac(1), 20, 1018, false);  // [8100 20]: a tagged frame at the limit
  auto plain = vlan_record(sw.mac(0), sw.mac(1), std::nullopt, 1014, false);
  for (auto* r : {&inner, &plain}) {
    (*r)[virtio::kNetHeaderBytes - 2] = std::byte{10};  // the VLAN the sending port classified, in num_buffers
    (*r)[virtio::kNetHeaderBytes - 1] = std::byte{0};
    ASSERT_EQ(from1.try_push(*r), shm::Reserve::kReserved);
  }
  from1.publish();
  ScriptedFrontend e0;
  ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] { return sw.counters(0).peers[1].in_frames == 2; }));
  EXPECT_EQ(sw.drops(0, DropReason::kVlanNotAllowed), 1u);
  ASSERT_EQ(e0.received.size(), 1u);
  EXPECT_EQ(vlan_tag(frame_of(e0.received[0])), 10);
  EXPECT_EQ(frame_of(e0.received[0]).size(), 1018u) << "the plain frame, tagged: mtu + 18";
}

// vswitchctl link: a port whose link word says down tells its frontend, drops what its
// frontend hands over and every record for it as link_down (learning nothing), and shows
// it in its link_down gauge; up again, it tells the frontend and forwards as before. The
// other port never stops.
TEST(EndpointLink, ADownPortDropsBothWaysAndComesBackUp) {
  TestSwitch sw(2, kTinyRings);
  ScriptedFrontend e0, e1;
  EndpointLoop l0(sw.resources(0, -1, -1), e0);
  EndpointLoop l1(sw.resources(1, -1, -1), e1);
  auto run = [&](const std::function<bool()>& done) {
    for (int pass = 0; pass < 2000; ++pass) {
      if (done()) return true;
      l0.poll_once();
      l1.poll_once();
    }
    return done();
  };
  sw.set_link_down(1, true);
  e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 200, false));
  e1.to_send.push_back(vlan_record(sw.mac(0), sw.mac(1), std::nullopt, 300, false));
  ASSERT_TRUE(run([&] { return sw.counters(1).drops[DropReason::kLinkDown] == 2; }))
      << "link_down drops at e1: " << sw.counters(1).drops[DropReason::kLinkDown];
  EXPECT_EQ(e1.links, std::vector<bool>{false}) << "the frontend is told once";
  EXPECT_TRUE(e0.received.empty());
  EXPECT_TRUE(e1.received.empty());
  EXPECT_EQ(sw.counters(1).loop.link_down, 1u);
  EXPECT_EQ(sw.counters(1).mac.learned, 0u) << "learned from a frame dropped for the link";
  EXPECT_EQ(e0.links, std::vector<bool>{true}) << "the other port is told its link once, at start";

  sw.set_link_down(1, false);
  e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 400, false));
  e1.to_send.push_back(vlan_record(sw.mac(0), sw.mac(1), std::nullopt, 500, false));
  ASSERT_TRUE(run([&] { return e0.received.size() == 1 && e1.received.size() == 1; }));
  EXPECT_EQ(e1.links, (std::vector<bool>{false, true}));
  EXPECT_EQ(e0.links, std::vector<bool>{true});
  EXPECT_EQ(frame_of(e1.received[0]).size(), 400u);
  EXPECT_EQ(frame_of(e0.received[0]).size(), 500u);
  l1.publish_stats();
  EXPECT_EQ(sw.counters(1).loop.link_down, 0u);
  EXPECT_EQ(sw.counters(1).drops[DropReason::kLinkDown], 2u);
}

// A restarted endpoint finds the link word where its predecessor left it and tells its
// frontend on its first pass, down or up: what the frontend shows (a TAP's carrier
// belongs to the device, which outlives the process) may be what the predecessor left,
// e.g. a link set up while the endpoint was restarting.
TEST(EndpointLink, ARestartedEndpointTellsItsFrontendTheLinkOnItsFirstPass) {
  TestSwitch sw(2, kTinyRings);
  sw.set_link_down(0, true);
  ScriptedFrontend e0;  // the same frontend across the restarts, as a TAP device is
  ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] { return !e0.links.empty(); }));
  EXPECT_EQ(e0.links, std::vector<bool>{false});
  EXPECT_EQ(sw.counters(0).loop.link_down, 1u);
  sw.set_link_down(0, false);  // while no loop runs
  ASSERT_TRUE(run_loops(sw, {{0, &e0}}, [&] { return e0.links.size() == 2; }));
  EXPECT_EQ(e0.links, (std::vector<bool>{false, true}));
  EXPECT_EQ(sw.counters(0).loop.link_down, 0u);
}

// Frames held for a full peer when the link goes down go no further: dropped as link_down.
TEST(EndpointLink, FramesHeldForAFullPeerAreDroppedWhenTheLinkGoesDown) {
  TestSwitch sw(2, kTinyRings);
  ScriptedFrontend e0;
  EndpointLoop l0(sw.resources(0, -1, -1), e0);
  const EndpointCounters held = hold_a_frame_for_e1(sw, e0, l0);
  ASSERT_LT(held.peers[1].out_frames, 12u) << "the channel never filled";
  sw.set_link_down(0, true);
  l0.poll_once();
  l0.publish_stats();
  const EndpointCounters after = sw.counters(0);
  EXPECT_EQ(after.peers[1].out_frames, held.peers[1].out_frames) << "a held frame went out after the link went down";
  EXPECT_GE(after.drops[DropReason::kLinkDown], 1u);
}

// A GSO frame is held to the MTU by its segments: gso_size past the headers.
TEST(EndpointMtu, AGsoFrameWithSegmentsAboveTheMtuIsDropped) {
  TestSwitch sw(2, "ring_bytes = 262144\nmax_frame = 9000\nstall_timeout_ms = 5000\n", "mtu = 1500\n");
  ScriptedFrontend e0, e1;
  auto big = vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 8000, true);
  auto fine = big;
  virtio::NetHeader h = header_of(big);
  h.gso_size = 7000;  // segments of 7054 bytes
  virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(big.data(), virtio::kNetHeaderBytes));
  h.gso_size = 1460;  // 1460 + 34 + 20 = 1514: a full 1500-byte segment
  virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(fine.data(), virtio::kNetHeaderBytes));
  e0.to_send = {big, fine};
  ASSERT_TRUE(run_loops(sw, {{0, &e0}, {1, &e1}}, [&] { return e1.received.size() == 1; }));
  EXPECT_EQ(sw.drops(0, DropReason::kMtuExceeded), 1u);
  EXPECT_EQ(header_of(e1.received[0]).gso_size, 1460);
}

// A record the frontend refused (kRetryLater) that then leaves its channel without being
// taken (here its sender corrupts it and the channel resynchronises past it) ends the
// frontend's wait: a refusal long after starts a wait of its own, and its frame waits in
// its channel, not dropped at once (guest_not_ready) as though the frontend had refused
// everything since the first refusal.
TEST(EndpointLoop, ARefusedRecordLostToAResyncDoesNotLeaveTheWaitRunning) {
  TestSwitch sw(2, "ring_bytes = 8192\nmax_frame = 1500\nstall_timeout_ms = 50\n");
  shm::FrameProducer out = sw.producer(1, 0);  // e1 never runs: the test sends for it
  WithholdingFrontend r;
  EndpointLoop loop(sw.resources(0, -1, -1), r);  // pass by pass on this thread: it never sleeps
  ASSERT_EQ(push_record(out, sw, 1, 0, {}, 0), shm::Reserve::kReserved);
  out.publish();
  loop.poll_once();  // refused: the record waits at the head of its channel
  loop.publish_stats();
  ASSERT_EQ(sw.counters(0).peers[1].in_frames, 0u);
  // The sender overwrites the kind of the waiting record (the first in the ring): the
  // next pass finds it corrupt and resynchronises past it.
  std::span<std::byte> data = sw.channel_data(1, 0);
  std::memset(data.data() + 4, 0x5a, 4);
  loop.poll_once();
  loop.publish_stats();
  ASSERT_EQ(sw.drops(0, DropReason::kRingCorrupt), 1u);
  std::this_thread::sleep_for(150ms);  // three stall timeouts with nothing to deliver
  ASSERT_EQ(push_record(out, sw, 1, 0, {}, 1), shm::Reserve::kReserved);
  out.publish();
  loop.poll_once();  // refused: a new wait begins
  loop.publish_stats();
  EXPECT_EQ(sw.drops(0, DropReason::kGuestNotReady), 0u) << "the first refusal of a new wait dropped its frame";
  r.take = true;
  loop.poll_once();
  EXPECT_EQ(r.delivered.load(), 1u) << "the frame waited for the frontend";
  loop.publish_stats();
  EXPECT_EQ(sw.total_drops(0), 1u) << "only the corrupted record is lost";
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

namespace vswitch {
namespace {

// A capture on the sender (rx: what its frontend sent) and one on the receiver (tx: what
// was delivered to its frontend) see the same frames, byte for byte and in order, while
// the flow itself loses nothing; each loop counts what it copied. Without a reader the
// same loops copy nothing (the first half).
TEST(EndpointCapture, BothEndsOfAUnicastFlowSeeTheSameFrames) {
  TestSwitch sw(2, "ring_bytes = 65536\nmax_frame = 1500\n");
  const CaptureGeometry g{std::uint64_t{1} << 20, 1500};
  const std::string& name = sw.topology().switch_config.name;
  std::vector<shm::Region> objects;
  std::vector<CaptureWriter> writers;
  for (const char* ep : {"e0", "e1"}) {
    auto o = create_capture_object(name, ep, g, 7);
    ASSERT_TRUE(o.has_value()) << (o ? "" : o.error());
    objects.push_back(std::move(o.value()));
    auto w = CaptureWriter::attach_sized(name, ep, g, 7);
    ASSERT_TRUE(w.has_value()) << (w ? "" : w.error());
    writers.push_back(std::move(w.value()));
  }
  sw.set_capture(0, &writers[0]);
  sw.set_capture(1, &writers[1]);
  constexpr std::uint64_t kFrames = 100;
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, 1, kFrames));
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received == kFrames; }));
  sw.stop(0);
  sw.stop(1);
  EXPECT_EQ(sw.counters(0).loop.captured, 0u);
  EXPECT_EQ(sw.counters(1).loop.captured, 0u);

  auto sender = CaptureReader::attach(name, "e0", g, 7);
  auto receiver = CaptureReader::attach(name, "e1", g, 7);
  ASSERT_TRUE(sender.has_value() && receiver.has_value());
  ASSERT_TRUE(sender.value()->start(kCaptureRx, 0).has_value());
  ASSERT_TRUE(receiver.value()->start(kCaptureTx, 0).has_value());
  sw.start(1, sw.receiver(1));
  sw.start(0, sw.generator(0, 1, kFrames, 1));
  ASSERT_TRUE(eventually([&] { return sw.gen(1).received == 2 * kFrames; }));
  sw.stop(0);
  sw.stop(1);
  auto frames = [](CaptureReader& r, std::uint32_t direction) {
    std::vector<std::vector<std::byte>> out;
    r.drain(100000, [&](const CapturedFrame& f) {
      EXPECT_EQ(f.direction, direction);
      EXPECT_EQ(f.original_bytes, f.bytes.size());
      out.emplace_back(f.bytes.begin(), f.bytes.end());
    });
    return out;
  };
  const auto sent = frames(*sender.value(), kCaptureRx);
  const auto delivered = frames(*receiver.value(), kCaptureTx);
  ASSERT_EQ(sent.size(), kFrames);
  EXPECT_EQ(delivered, sent);
  EXPECT_EQ(sw.counters(0).loop.captured, kFrames);
  EXPECT_EQ(sw.counters(1).loop.captured, kFrames);
  EXPECT_EQ(sw.counters(0).loop.capture_dropped, 0u);
  EXPECT_EQ(sender.value()->report().captured, kFrames);
}

// A port turned off (its bit in peers_disabled, as vswitchd writes it on a reload): its
// peers send it nothing (no flood copy; unicast to its static address dropped as
// port_disabled), forget what they learned behind it (frames to such an address flood to
// the running ports instead), and drop what it still sends before it stops, learning
// nothing from it. Turned on again, it is a peer like any other.
TEST(EndpointPorts, ADisabledPortGetsNothingAndComesBack) {
  TestSwitch sw(3, kTinyRings, "", {"", "", "port_security = false\n"});
  ScriptedFrontend e0, e1, e2;
  EndpointLoop l0(sw.resources(0, -1, -1), e0);
  EndpointLoop l1(sw.resources(1, -1, -1), e1);
  EndpointLoop l2(sw.resources(2, -1, -1), e2);
  auto run = [&](const std::function<bool()>& done) {
    for (int pass = 0; pass < 2000; ++pass) {
      if (done()) return true;
      l0.poll_once();
      l1.poll_once();
      l2.poll_once();
      for (EndpointLoop* l : {&l0, &l1, &l2}) l->publish_stats();
    }
    return done();
  };
  const MacAddress behind2{{0x02, 0x00, 0x00, 0x00, 0x00, 0x42}};  // a station behind e2, learned
  const MacAddress bcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
  e2.to_send.push_back(vlan_record(sw.mac(0), behind2, std::nullopt, 100, false));
  ASSERT_TRUE(run([&] { return e0.received.size() == 1; }));
  l0.publish_stats(true);
  ASSERT_EQ(sw.counters(0).mac.learned, 1u) << "e0 did not learn the station behind e2";

  sw.set_disabled(std::uint64_t{1} << 2);
  e0.to_send.push_back(vlan_record(bcast, sw.mac(0), std::nullopt, 200, false));    // flooded: e1 only
  e0.to_send.push_back(vlan_record(behind2, sw.mac(0), std::nullopt, 300, false));  // forgotten: flooded, e1 only
  e0.to_send.push_back(vlan_record(sw.mac(2), sw.mac(0), std::nullopt, 400, false));  // static: dropped
  e2.to_send.push_back(vlan_record(sw.mac(0), behind2, std::nullopt, 500, false));  // e2 still runs: dropped at e0
  ASSERT_TRUE(run([&] {
    return e1.received.size() == 2 && sw.drops(0, DropReason::kPortDisabled) == 2;
  })) << "e1 got " << e1.received.size() << ", port_disabled at e0: " << sw.drops(0, DropReason::kPortDisabled);
  for (int pass = 0; pass < 10; ++pass) run([] { return false; });  // nothing more arrives anywhere
  l0.publish_stats(true);
  EXPECT_EQ(e0.received.size(), 1u) << "e0 took a frame from a disabled port";
  EXPECT_EQ(e1.received.size(), 2u);
  EXPECT_TRUE(e2.received.empty()) << "a disabled port got a frame";
  EXPECT_EQ(frame_of(e1.received[0]).size(), 200u);
  EXPECT_EQ(frame_of(e1.received[1]).size(), 300u);
  EXPECT_EQ(sw.counters(0).mac.entries, 3u) << "the station learned behind e2 is forgotten (the 3 static entries stay)";
  EXPECT_EQ(sw.counters(0).peers[2].out_frames, 0u);
  EXPECT_EQ(sw.total_drops(0), 2u);
  EXPECT_EQ(sw.total_drops(1), 0u);

  sw.set_disabled(0);
  e0.to_send.push_back(vlan_record(sw.mac(2), sw.mac(0), std::nullopt, 600, false));
  e2.to_send.push_back(vlan_record(sw.mac(0), behind2, std::nullopt, 700, false));
  ASSERT_TRUE(run([&] { return e2.received.size() == 1 && e0.received.size() == 2; }));
  EXPECT_EQ(frame_of(e2.received[0]).size(), 600u);
  EXPECT_EQ(frame_of(e0.received[1]).size(), 700u);
  l0.publish_stats(true);
  EXPECT_EQ(sw.counters(0).mac.entries, 4u) << "the station behind e2 is learned again";
  EXPECT_EQ(sw.total_drops(0), 2u);
}

// A frame held for a full peer when that peer is turned off goes no further: dropped as
// port_disabled, and nothing more is sent into its channel.
TEST(EndpointPorts, AFrameHeldForAPortTurnedOffIsDropped) {
  TestSwitch sw(2, kTinyRings);
  ScriptedFrontend e0;
  EndpointLoop l0(sw.resources(0, -1, -1), e0);
  const EndpointCounters held = hold_a_frame_for_e1(sw, e0, l0);
  ASSERT_LT(held.peers[1].out_frames, 12u) << "the channel never filled";
  sw.set_disabled(std::uint64_t{1} << 1);
  for (int pass = 0; pass < 4; ++pass) l0.poll_once();
  l0.publish_stats();
  const EndpointCounters after = sw.counters(0);
  EXPECT_EQ(after.peers[1].out_frames, held.peers[1].out_frames) << "a frame went into a disabled port's channel";
  EXPECT_EQ(after.drops[DropReason::kPortDisabled], 1u) << "the held frame is a port_disabled drop";
  EXPECT_EQ(after.drops.total(), 1u + held.drops.total());
}

// A port turned on starts with what waited in its channels dropped (port_disabled): those
// frames were sent to it before its peers saw it go off, perhaps long ago. Then it
// forwards as usual. discard_inbound, which a port turned off also runs as it stops,
// counts every record it takes.
TEST(EndpointPorts, APortTurnedOnDropsWhatWaitedForItThenForwards) {
  TestSwitch sw(2, kTinyRings);
  shm::FrameProducer out = sw.producer(1, 0);  // e1 never runs: the test sends for it
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_EQ(push_record(out, sw, 1, 0, {}, i), shm::Reserve::kReserved);
  out.publish();
  ScriptedFrontend e0;
  EndpointResources res = sw.resources(0, -1, -1);
  res.fresh = true;
  EndpointLoop loop(res, e0);
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats();
  EXPECT_TRUE(e0.received.empty()) << "a port turned on delivered what waited from before";
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 5u);
  ASSERT_EQ(push_record(out, sw, 1, 0, {}, 5), shm::Reserve::kReserved);
  out.publish();
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  EXPECT_EQ(e0.received.size(), 1u);
  for (std::uint64_t i = 6; i < 9; ++i) ASSERT_EQ(push_record(out, sw, 1, 0, {}, i), shm::Reserve::kReserved);
  out.publish();
  EXPECT_EQ(loop.discard_inbound(), 3u);  // as when it is turned off again
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats();
  EXPECT_EQ(e0.received.size(), 1u);
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 8u);
  EXPECT_EQ(sw.total_drops(0), 8u);
}

// What a port had sent and a peer had not taken when the port is turned off is dropped
// by that peer at once (port_disabled), counted in as every record taken: it must not
// reach the peer after the port comes back from a run that is over.
TEST(EndpointPorts, WhatAPortTurnedOffHadSentIsDroppedAtOnce) {
  TestSwitch sw(2, kTinyRings);
  shm::FrameProducer out = sw.producer(1, 0);  // e1 never runs: the test sends for it
  ScriptedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  loop.poll_once();  // running, e1 on: nothing waits yet
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_EQ(push_record(out, sw, 1, 0, {}, i), shm::Reserve::kReserved);
  out.publish();
  sw.set_disabled(std::uint64_t{1} << 1);
  loop.poll_once();
  sw.set_disabled(0);  // and on again before e0 ever drained the channel
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats();
  EXPECT_TRUE(e0.received.empty()) << "frames of a port's earlier run were delivered after it came back";
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 4u);
  EXPECT_EQ(sw.counters(0).peers[1].in_frames, 4u) << "taken from the channel: counted in";
}

// A port turned off and on again while a peer never ran in between (restarting, or
// waiting for its guest): the peer, when it sees the port on, drops what the port's
// earlier run left in its channel, up to where vswitchd saw that run end, and delivers
// the new run's frames after it.
TEST(EndpointPorts, APeerThatMissedTheWholeCycleDropsOnlyTheEarlierRun) {
  TestSwitch sw(2, kTinyRings);
  shm::FrameProducer out = sw.producer(1, 0);  // e1's runs: the test sends for them
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_EQ(push_record(out, sw, 1, 0, {}, i), shm::Reserve::kReserved);
  out.publish();
  sw.set_disabled(std::uint64_t{1} << 1);  // e1 turned off; e0 is not running to see it
  sw.fence(1);                             // turned on again: its earlier run ended here
  for (std::uint64_t i = 3; i < 5; ++i) ASSERT_EQ(push_record(out, sw, 1, 0, {}, i), shm::Reserve::kReserved);
  out.publish();
  sw.set_disabled(0);
  ScriptedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);  // e0 starts again only now
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats();
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 3u);
  ASSERT_EQ(e0.received.size(), 2u) << "the new run's frames were not delivered";
  EXPECT_EQ(sw.counters(0).peers[1].in_frames, 5u);
}

// The earlier run ended on a pad (its last record did not fit before the ring's end, and
// the ring was full): its channel ends after the pad, where the new run's first record
// starts. A peer fencing it skips the pad and keeps that record.
TEST(EndpointPorts, AFenceAfterAPadKeepsTheNewRunsFirstFrame) {
  TestSwitch sw(2, kTinyRings);  // 8 KiB channels; 60-byte frames: 80-byte records
  {
    shm::FrameProducer old_run = sw.producer(1, 0);
    std::uint64_t i = 0;
    while (push_record(old_run, sw, 1, 0, {}, i) == shm::Reserve::kReserved) ++i;
    old_run.publish();
    ASSERT_EQ(i, 102u) << "the channel holds another number of records: the pad is not where this test puts it";
    ASSERT_EQ(sw.channel_head(1, 0), 8192u) << "the full ring's pad was not published";
  }
  {
    shm::FrameConsumer taken = sw.consumer(1, 0);  // the earlier run's records, taken
    for (int k = 0; k < 102; ++k) {
      ASSERT_EQ(taken.peek().status, shm::Pop::kRecord);
      taken.consume();
    }
    taken.release();  // the tail stays before the pad
  }
  sw.set_disabled(std::uint64_t{1} << 1);
  sw.fence(1);  // at 8192, after the pad
  sw.set_disabled(0);
  shm::FrameProducer new_run = sw.producer(1, 0);
  ASSERT_EQ(push_record(new_run, sw, 1, 0, {}, 1000), shm::Reserve::kReserved);
  new_run.publish();
  ScriptedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats();
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 0u) << "the new run's first frame was taken for the earlier run's";
  EXPECT_EQ(e0.received.size(), 1u);
}

// A peer that did no pass while a port went off and came back sees the same mask as
// before; the fence still reaches it (fence_seq), and what the earlier run left goes.
TEST(EndpointPorts, AFenceReachesAPeerThatSawTheMaskUnchanged) {
  TestSwitch sw(2, kTinyRings);
  ScriptedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  loop.poll_once();  // the mask as it will be again
  shm::FrameProducer out = sw.producer(1, 0);
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_EQ(push_record(out, sw, 1, 0, {}, i), shm::Reserve::kReserved);
  out.publish();
  sw.set_disabled(std::uint64_t{1} << 1);  // e0 does no pass now
  sw.fence(1);
  sw.set_disabled(0);
  ASSERT_EQ(push_record(out, sw, 1, 0, {}, 3), shm::Reserve::kReserved);
  out.publish();
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats();
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 3u);
  EXPECT_EQ(e0.received.size(), 1u);
}

// A fence that drops nothing leaves the frontend's note on the record waiting at the head
// of the channel: a frame delivered in parts (segments cut in software) goes on where it
// stopped, never starts again.
TEST(EndpointPorts, AFenceThatDropsNothingKeepsTheFrontendsNote) {
  TestSwitch sw(2, kTinyRings);
  sw.fence(1);  // e1's earlier run ended before anything below
  shm::FrameProducer out = sw.producer(1, 0);
  ASSERT_EQ(push_record(out, sw, 1, 0, {}, 0), shm::Reserve::kReserved);
  out.publish();
  WithholdingFrontend e0;
  e0.leave_note = 7;  // "got this far": the loop hands it back with the same record
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  loop.poll_once();
  EXPECT_EQ(e0.handed_note.load(), 0u);
  sw.bump_fence(0);  // vswitchd fenced again (another port, say): the same stale_to for e1
  loop.poll_once();
  EXPECT_EQ(e0.handed_note.load(), 7u) << "the frontend's note was lost to a fence that dropped nothing";
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 0u);
}

// A port turned on reads nothing from its frontend while its own bit is still set in its
// slice (vswitchd clears it there after every peer's): its first frames are not sent to
// peers that would drop them as port_disabled. Then it forwards them, none lost.
TEST(EndpointPorts, APortTurnedOnReadsItsFrontendOnceItsPeersAreTold) {
  TestSwitch sw(2, kTinyRings);
  sw.set_disabled(std::uint64_t{1} << 0);  // e0 is being turned on: its peers not told yet
  ScriptedFrontend e0;
  for (int i = 0; i < 3; ++i) e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 100, false));
  EndpointResources res = sw.resources(0, -1, -1);
  res.fresh = true;
  res.announce_wait_ns = 60'000'000'000;  // far beyond this test: the bounded wait has its own test
  EndpointLoop loop(res, e0);
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats(true);
  EXPECT_EQ(sw.counters(0).traffic.rx_frames, 0u) << "read from the frontend before the peers were told";
  sw.set_disabled(0);  // vswitchd, once e0 reported up
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats(true);
  EXPECT_EQ(sw.counters(0).peers[1].out_frames, 3u);
}

// Were vswitchd never to clear the bit, the port forwards anyway after a bounded wait
// (announce_wait_ns; 200 ms in vswitchd, 100 ms here).
TEST(EndpointPorts, APortTurnedOnWaitsForItsPeersBoundedly) {
  TestSwitch sw(2, kTinyRings);
  sw.set_disabled(std::uint64_t{1} << 0);
  ScriptedFrontend e0;
  e0.to_send.push_back(vlan_record(sw.mac(1), sw.mac(0), std::nullopt, 100, false));
  EndpointResources res = sw.resources(0, -1, -1);
  res.fresh = true;
  res.announce_wait_ns = 100'000'000;
  const auto start = std::chrono::steady_clock::now();
  EndpointLoop loop(res, e0);
  const bool sent = eventually([&] {
    loop.poll_once();
    loop.publish_stats(true);
    return sw.counters(0).peers[1].out_frames == 1;
  }, 10s);
  EXPECT_TRUE(sent);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 100ms) << "did not wait for its peers at all";
  EXPECT_LT(waited, 5s) << "waited past its bound";
}

// The CPU time thread `t` has used so far.
double thread_cpu_seconds(std::thread& t) {
  clockid_t id{};
  timespec ts{};
  if (pthread_getcpuclockid(t.native_handle(), &id) != 0 || clock_gettime(id, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// run() of a port turned on sleeps while it waits for its peers to be told (a TAP with
// frames queued stays readable: a loop that slept on it would spin), and is woken by its
// doorbell, which vswitchd rings once it has cleared the bit.
TEST(EndpointPorts, APortTurnedOnSleepsOnItsDoorbellUntilItsPeersAreTold) {
  TestSwitch sw(2, kTinyRings);
  sw.set_disabled(std::uint64_t{1} << 0);
  GeneratorFrontend::Config c = sw.generator(0, 1, 5);
  auto stop = std::move(sys::EventFd::create().value());
  auto bell = std::move(shm::EventFdDoorbell::create().value());
  GeneratorFrontend gen(c);
  EndpointResources res = sw.resources(0, bell.fd(), stop.fd());
  res.fresh = true;
  res.announce_wait_ns = 60'000'000'000;  // far beyond this test: only the doorbell ends the wait
  std::atomic<bool> running{false};
  sys::Status<std::string> result;
  std::thread t([&] {
    EndpointLoop loop(res, gen);
    running = true;
    result = loop.run();
  });
  ASSERT_TRUE(eventually([&] { return running.load(); }, 10s));
  std::this_thread::sleep_for(20ms);  // the scenario: the port waits a while (not a synchronisation)
  // Two 100 ms windows, the quieter one judged: a loop that spins spins through both,
  // while one kept off its core until now may still spend the first setting up.
  double quietest = 1.0;
  for (int window = 0; window < 2; ++window) {
    const double cpu_before = thread_cpu_seconds(t);
    ASSERT_GT(cpu_before, 0.0) << "the thread's CPU clock could not be read";
    std::this_thread::sleep_for(100ms);
    quietest = std::min(quietest, thread_cpu_seconds(t) - cpu_before);
  }
  EXPECT_LT(quietest, 0.015) << "spun while waiting";
  EXPECT_EQ(sw.counters(0).traffic.rx_frames, 0u) << "read its frontend before its peers were told";
  sw.set_disabled(0);
  bell.ring();  // what vswitchd's wake_endpoints does
  EXPECT_TRUE(eventually([&] { return sw.counters(0).peers[1].out_frames == 5; }, 5s));
  stop.signal();
  t.join();
  EXPECT_TRUE(result.has_value());
}

// Plays the peer of a port that vswitchd turns on in the middle of this endpoint's pass:
// at the start of the pass (after the loop has looked at its slice), the hook runs.
class HookedFrontend final : public Frontend {
 public:
  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte>, std::uint64_t) noexcept override { return {Rx::kNone}; }
  Delivery deliver(const endpoints::virtio::CheckedNetHeader&, std::span<const std::byte>, FrameAddresses, PortId,
                   std::uint64_t&) noexcept override {
    ++delivered;
    return Delivery::kDelivered;
  }
  void begin_pass() noexcept override {
    if (hook) std::exchange(hook, nullptr)();
  }
  std::function<void()> hook;
  std::size_t delivered = 0;
};

// A port turned on while a peer's pass runs can send its first frame before that peer
// looks at its slice again: the peer, finding a frame from a port it believes off, looks
// once more and, the port being on, keeps the frame for its next pass (which takes the
// change and its fence first) rather than drop it. A frame from the port's earlier run
// that was still in the channel is dropped by the fence.
TEST(EndpointPorts, AFrameFromAPortTurnedOnDuringAPassIsNotDropped) {
  TestSwitch sw(2, kTinyRings);
  sw.set_disabled(std::uint64_t{1} << 1);
  HookedFrontend e0;
  EndpointLoop loop(sw.resources(0, -1, -1), e0);
  loop.poll_once();  // e0 has seen e1 off
  shm::FrameProducer out = sw.producer(1, 0);
  ASSERT_EQ(push_record(out, sw, 1, 0, {}, 0), shm::Reserve::kReserved);  // e1's earlier run, late
  out.publish();
  e0.hook = [&] {
    // vswitchd turns e1 on (its channel's head is where the earlier run ended), then e1's
    // new run sends its first frame; all while e0's pass has already read its slice.
    sw.fence(1);
    sw.set_disabled(0);
    ASSERT_EQ(push_record(out, sw, 1, 0, {}, 1), shm::Reserve::kReserved);
    out.publish();
  };
  for (int pass = 0; pass < 4; ++pass) loop.poll_once();
  loop.publish_stats(true);
  EXPECT_EQ(e0.delivered, 1u) << "the new run's first frame was dropped";
  EXPECT_EQ(sw.drops(0, DropReason::kPortDisabled), 1u) << "the earlier run's frame is dropped";
}

}  // namespace
}  // namespace vswitch
