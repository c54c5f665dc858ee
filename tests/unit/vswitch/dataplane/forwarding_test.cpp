#include "vswitch/dataplane/forwarding.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace vswitch {
namespace {

MacAddress M(const char* s) { return *MacAddress::parse(s); }

std::vector<std::byte> frame(const MacAddress& dst, const MacAddress& src, std::size_t len = 60) {
  std::vector<std::byte> f(len);
  std::memcpy(f.data(), dst.bytes.data(), 6);
  std::memcpy(f.data() + 6, src.bytes.data(), 6);
  return f;
}

const MacAddress kA = M("02:00:00:00:00:0a");
const MacAddress kB = M("02:00:00:00:00:0b");
const MacAddress kC = M("02:00:00:00:00:0c");
const MacAddress kBroadcast = M("ff:ff:ff:ff:ff:ff");

struct Fixture : ::testing::Test {
  MacTable table{MacTable::Config{64, 1000, 100, 1}};
  Forwarder fwd{Forwarder::Config{0, kA, false}, table};
};

TEST_F(Fixture, UnknownUnicastAndBroadcastAreFlooded) {
  EXPECT_EQ(fwd.from_frontend(frame(kB, kA), 0).kind, Decision::Kind::kFlood);
  EXPECT_EQ(fwd.from_frontend(frame(kBroadcast, kA), 0).kind, Decision::Kind::kFlood);
  EXPECT_EQ(fwd.from_frontend(frame(M("33:33:00:00:00:01"), kA), 0).kind, Decision::Kind::kFlood);
}

TEST_F(Fixture, LearnedDestinationIsUnicast) {
  EXPECT_FALSE(fwd.from_peer(frame(kA, kB), 2, 0).has_value());  // B lives behind port 2
  const Decision d = fwd.from_frontend(frame(kB, kA), 1);
  EXPECT_EQ(d.kind, Decision::Kind::kUnicast);
  EXPECT_EQ(d.port, 2);
}

TEST_F(Fixture, HairpinIsDroppedAndCounted) {
  ASSERT_EQ(fwd.from_frontend(frame(kBroadcast, kC), 0).kind, Decision::Kind::kFlood);  // C behind self
  const Decision d = fwd.from_frontend(frame(kC, kA), 1);
  EXPECT_EQ(d.kind, Decision::Kind::kDrop);
  EXPECT_EQ(d.reason, DropReason::kHairpin);
  EXPECT_EQ(fwd.drops()[DropReason::kHairpin], 1u);
}

TEST_F(Fixture, RuntFramesAreDroppedBothWays) {
  EXPECT_EQ(fwd.from_frontend(std::vector<std::byte>(13), 0).reason, DropReason::kRuntFrame);
  EXPECT_EQ(fwd.from_peer(std::vector<std::byte>(5), 1, 0), DropReason::kRuntFrame);
  EXPECT_EQ(fwd.drops()[DropReason::kRuntFrame], 2u);
}

// No station sends from a group address: such a frame is dropped and counted, from the
// frontend and from a peer (whose process is not trusted to have dropped it), and
// nothing is learned from it.
TEST_F(Fixture, GroupSourceIsDroppedBothWays) {
  for (const MacAddress& src : {kBroadcast, M("01:00:5e:00:00:01"), M("33:33:00:00:00:01"), M("03:00:00:00:00:0a")}) {
    const Decision d = fwd.from_frontend(frame(kB, src), 0);
    EXPECT_EQ(d.kind, Decision::Kind::kDrop);
    EXPECT_EQ(d.reason, DropReason::kGroupSourceMac);
    EXPECT_EQ(fwd.from_peer(frame(kA, src), 2, 0), DropReason::kGroupSourceMac);
  }
  EXPECT_EQ(fwd.drops()[DropReason::kGroupSourceMac], 8u);
  EXPECT_EQ(fwd.drops().total(), 8u);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(to_string(DropReason::kGroupSourceMac), "group_source_mac");
}

// A port flooding new source addresses is held to its share of the table; its frames are
// still forwarded (flooded: unknown destinations), and a later station on another port
// is still learned and reached by unicast.
TEST(Forwarding, SourceFloodFromOnePortLeavesRoomForTheOthers) {
  MacTable table{MacTable::Config{64, 1000, 100, 1}};  // share: 16 learned addresses per port
  Forwarder fwd{Forwarder::Config{0, std::nullopt, false}, table};
  for (std::uint32_t i = 0; i < 1000; ++i) {
    MacAddress src = kA;
    src.bytes[4] = static_cast<std::uint8_t>(i >> 8);
    src.bytes[5] = static_cast<std::uint8_t>(i);
    ASSERT_EQ(fwd.from_frontend(frame(kBroadcast, src), 0).kind, Decision::Kind::kFlood) << i;
  }
  EXPECT_EQ(table.counters().refused_port_limit, 1000u - 16u);
  EXPECT_EQ(table.counters().refused_full, 0u);
  for (std::uint8_t p = 1; p < 4; ++p) {
    MacAddress station = kB;
    station.bytes[5] = p;
    EXPECT_FALSE(fwd.from_peer(frame(kBroadcast, station), p, 0).has_value());
    const Decision d = fwd.from_frontend(frame(station, kA), 0);
    EXPECT_EQ(d.kind, Decision::Kind::kUnicast) << int{p};
    EXPECT_EQ(d.port, p);
  }
}

TEST(Forwarding, PortSecurityDropsASpoofedSource) {
  MacTable table{MacTable::Config{64, 1000, 100, 1}};
  Forwarder fwd{Forwarder::Config{0, kA, true}, table};
  EXPECT_EQ(fwd.from_frontend(frame(kBroadcast, kA), 0).kind, Decision::Kind::kFlood);
  const Decision d = fwd.from_frontend(frame(kBroadcast, kB), 0);
  EXPECT_EQ(d.kind, Decision::Kind::kDrop);
  EXPECT_EQ(d.reason, DropReason::kSpoofedSource);
  EXPECT_EQ(fwd.drops()[DropReason::kSpoofedSource], 1u);
  EXPECT_EQ(table.lookup(kB, 0), std::nullopt);  // nothing learned from the spoofed frame
}

TEST(Forwarding, StaticMacClaimedByAnotherPortIsDropped) {
  MacTable table{MacTable::Config{64, 1000, 100, 1}};
  ASSERT_TRUE(table.add_static(kB, 2));
  Forwarder fwd{Forwarder::Config{0, kA, false}, table};
  EXPECT_EQ(fwd.from_peer(frame(kA, kB), 3, 0), DropReason::kStaticMacConflict);  // B is port 2's
  EXPECT_EQ(fwd.from_frontend(frame(kA, kB), 0).reason, DropReason::kStaticMacConflict);
  EXPECT_EQ(fwd.drops()[DropReason::kStaticMacConflict], 2u);
  EXPECT_EQ(table.lookup(kB, 0), PortId{2});
  EXPECT_FALSE(fwd.from_peer(frame(kA, kB), 2, 0).has_value());
}

TEST(Forwarding, EveryDropReasonHasAName) {
  for (std::size_t i = 0; i < static_cast<std::size_t>(DropReason::kCount); ++i)
    EXPECT_NE(to_string(static_cast<DropReason>(i)), "unknown") << i;
}

}  // namespace
}  // namespace vswitch
