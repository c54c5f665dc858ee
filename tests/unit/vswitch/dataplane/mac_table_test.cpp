#include "vswitch/dataplane/mac_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

namespace vswitch {
namespace {

MacAddress mac(std::uint32_t n) {
  MacAddress m;
  m.bytes = {0x02, 0x00, static_cast<std::uint8_t>(n >> 24), static_cast<std::uint8_t>(n >> 16),
             static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)};
  return m;
}

MacTable::Config config(std::uint32_t capacity = 16) {
  MacTable::Config c;
  c.capacity = capacity;
  c.aging_ms = 1000;
  c.move_damping_ms = 100;
  c.seed = 7;
  return c;
}

TEST(MacTable, LearnsAndLooksUp) {
  MacTable t(config());
  EXPECT_EQ(t.learn(mac(1), 3, 10), Learn::kLearned);
  EXPECT_EQ(t.lookup(mac(1), 11), PortId{3});
  EXPECT_EQ(t.lookup(mac(2), 11), std::nullopt);
  EXPECT_EQ(t.learn(mac(1), 3, 20), Learn::kRefreshed);
  EXPECT_EQ(t.counters().learned, 1u);
  EXPECT_EQ(t.size(), 1u);
}

// IEEE 802.1Q independent VLAN learning: one address in two VLANs is two entries, each
// behind its own port, each static or learned on its own.
TEST(MacTable, EachVlanLearnsOnItsOwn) {
  MacTable t(config());
  EXPECT_EQ(t.learn(mac(1), 3, 10, 10), Learn::kLearned);
  EXPECT_EQ(t.learn(mac(1), 4, 10, 20), Learn::kLearned) << "not a move: another VLAN";
  EXPECT_EQ(t.lookup(mac(1), 11, 10), PortId{3});
  EXPECT_EQ(t.lookup(mac(1), 11, 20), PortId{4});
  EXPECT_FALSE(t.lookup(mac(1), 11).has_value()) << "nor in the VLAN-unaware ports' domain";
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.add_static(mac(2), 1, 10));
  EXPECT_EQ(t.learn(mac(2), 5, 12, 20), Learn::kLearned) << "static in VLAN 10 only";
  EXPECT_EQ(t.learn(mac(2), 5, 12, 10), Learn::kRefusedStatic);
  const auto entries = t.entries(12);
  EXPECT_EQ(std::count_if(entries.begin(), entries.end(), [](const MacEntry& e) { return e.vlan == 20; }), 2);
}

// A port turned off: everything learned behind it goes, in every VLAN, and its share of
// the table with it (its addresses can be learned elsewhere at once, undamped); its static
// entries and every other port's stay.
TEST(MacTable, ForgetsWhatWasLearnedBehindOnePort) {
  MacTable::Config c = config(64);
  c.max_per_port = 8;
  MacTable t(c);
  for (std::uint32_t i = 0; i < 8; ++i) ASSERT_EQ(t.learn(mac(i), 3, 10, static_cast<std::uint16_t>(i % 2)), Learn::kLearned);
  for (std::uint32_t i = 8; i < 12; ++i) ASSERT_EQ(t.learn(mac(i), 4, 10), Learn::kLearned);
  ASSERT_TRUE(t.add_static(mac(100), 3));
  EXPECT_EQ(t.learn(mac(50), 3, 10), Learn::kRefusedPortLimit);
  EXPECT_EQ(t.forget_port(3), 8u);
  EXPECT_EQ(t.size(), 5u);
  EXPECT_EQ(t.learned_on(3), 0u);
  for (std::uint32_t i = 0; i < 8; ++i) EXPECT_FALSE(t.lookup(mac(i), 11, static_cast<std::uint16_t>(i % 2)).has_value());
  for (std::uint32_t i = 8; i < 12; ++i) EXPECT_EQ(t.lookup(mac(i), 11), PortId{4});
  EXPECT_EQ(t.lookup(mac(100), 11), PortId{3}) << "a static entry is the topology's, not learned";
  EXPECT_EQ(t.learn(mac(1), 5, 11, 1), Learn::kLearned) << "learned anew elsewhere, not a damped move";
  EXPECT_EQ(t.learn(mac(50), 3, 11), Learn::kLearned) << "its share is free again";
  EXPECT_EQ(t.forget_port(7), 0u);
}

TEST(MacTable, NeverLearnsGroupOrZeroSources) {
  MacTable t(config());
  EXPECT_EQ(t.learn(*MacAddress::parse("ff:ff:ff:ff:ff:ff"), 1, 0), Learn::kRefusedMulticast);
  EXPECT_EQ(t.learn(*MacAddress::parse("01:00:5e:00:00:01"), 1, 0), Learn::kRefusedMulticast);
  EXPECT_EQ(t.learn(MacAddress{}, 1, 0), Learn::kRefusedMulticast);
  EXPECT_EQ(t.counters().refused_multicast, 3u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(MacTable, EntriesAgeOutAndAreCounted) {
  MacTable t(config());
  ASSERT_EQ(t.learn(mac(1), 1, 0), Learn::kLearned);
  ASSERT_EQ(t.learn(mac(2), 1, 500), Learn::kLearned);
  EXPECT_EQ(t.lookup(mac(1), 999), PortId{1});
  EXPECT_EQ(t.lookup(mac(1), 1000), std::nullopt);  // aged exactly at aging_ms
  EXPECT_EQ(t.counters().aged, 1u);
  EXPECT_EQ(t.sweep(1500), 1u);  // mac(2)
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.counters().aged, 2u);
}

TEST(MacTable, RefreshKeepsAnEntryAlive) {
  MacTable t(config());
  ASSERT_EQ(t.learn(mac(1), 1, 0), Learn::kLearned);
  ASSERT_EQ(t.learn(mac(1), 1, 900), Learn::kRefreshed);
  EXPECT_EQ(t.lookup(mac(1), 1800), PortId{1});
}

TEST(MacTable, StaticEntryIsNeverOverwrittenOrAged) {
  MacTable t(config());
  ASSERT_TRUE(t.add_static(mac(1), 4));
  EXPECT_EQ(t.learn(mac(1), 2, 10), Learn::kRefusedStatic);
  EXPECT_EQ(t.counters().refused_static, 1u);
  EXPECT_EQ(t.learn(mac(1), 4, 10), Learn::kRefreshed);
  EXPECT_EQ(t.lookup(mac(1), 1'000'000), PortId{4});
  EXPECT_EQ(t.sweep(1'000'000), 0u);
  EXPECT_FALSE(t.add_static(*MacAddress::parse("ff:ff:ff:ff:ff:ff"), 1));
}

TEST(MacTable, MovesAreDamped) {
  MacTable t(config());
  ASSERT_EQ(t.learn(mac(1), 1, 0), Learn::kLearned);
  EXPECT_EQ(t.learn(mac(1), 2, 10), Learn::kMoved);
  EXPECT_EQ(t.learn(mac(1), 1, 50), Learn::kMoveDamped);  // flapping back within 100 ms
  EXPECT_EQ(t.lookup(mac(1), 50), PortId{2});
  EXPECT_EQ(t.learn(mac(1), 1, 110), Learn::kMoved);
  EXPECT_EQ(t.lookup(mac(1), 110), PortId{1});
  EXPECT_EQ(t.counters().moved, 2u);
  EXPECT_EQ(t.counters().move_damped, 1u);
}

TEST(MacTable, FullTableRefusesNewAddressesAndKeepsTheKnownOnes) {
  MacTable::Config c = config(8);
  c.max_per_port = 8;  // no share below the table's size: this is about the table
  MacTable t(c);
  ASSERT_TRUE(t.add_static(mac(100), 9));
  for (std::uint32_t i = 0; i < 7; ++i) ASSERT_EQ(t.learn(mac(i), 1, 0), Learn::kLearned);
  for (std::uint32_t i = 1000; i < 2000; ++i) EXPECT_EQ(t.learn(mac(i), 2, 10), Learn::kRefusedFull);
  EXPECT_EQ(t.counters().refused_full, 1000u);
  EXPECT_EQ(t.size(), 8u);
  EXPECT_EQ(t.lookup(mac(100), 10), PortId{9});
  for (std::uint32_t i = 0; i < 7; ++i) EXPECT_EQ(t.lookup(mac(i), 10), PortId{1});
  // Once the dynamic entries have aged, a full table makes room again.
  EXPECT_EQ(t.learn(mac(5000), 3, 2000), Learn::kLearned);
  EXPECT_EQ(t.lookup(mac(100), 2000), PortId{9});
}

// A static entry added to a full table (a port moved into a VLAN while the switch runs)
// takes the place of a learned one; one that can be removed again goes without touching
// a learned entry of the same address in another VLAN. A table full of static entries
// refuses.
TEST(MacTable, AStaticEntryTakesALearnedOnesPlaceAndCanBeRemoved) {
  MacTable::Config c = config(8);
  c.max_per_port = 8;
  MacTable t(c);
  for (std::uint32_t i = 0; i < 8; ++i) ASSERT_EQ(t.learn(mac(i), 1, 0, 10), Learn::kLearned);
  ASSERT_EQ(t.size(), 8u);
  ASSERT_TRUE(t.add_static(mac(100), 9, 20));
  EXPECT_EQ(t.size(), 8u);
  EXPECT_EQ(t.lookup(mac(100), 1, 20), PortId{9});
  std::size_t kept = 0;
  for (std::uint32_t i = 0; i < 8; ++i) kept += t.lookup(mac(i), 1, 10).has_value() ? 1u : 0u;
  EXPECT_EQ(kept, 7u) << "exactly one learned entry gives way";
  EXPECT_EQ(t.counters().evicted_for_static, 1u) << "the learned entry that gave way is counted";
  ASSERT_TRUE(t.add_static(mac(100), 8, 20));
  ASSERT_TRUE(t.add_static(mac(100), 9, 20));
  EXPECT_EQ(t.counters().evicted_for_static, 1u) << "moving a static entry to another port and back evicts nothing";
  EXPECT_EQ(t.learn(mac(100), 3, 2, 20), Learn::kRefusedStatic);
  EXPECT_EQ(t.learn(mac(100), 3, 2, 30), Learn::kRefusedFull) << "in another VLAN the address is not static";
  EXPECT_FALSE(t.remove_static(mac(100), 20, 8)) << "another port's static entry stays (the address moved to it)";
  EXPECT_TRUE(t.remove_static(mac(100), 20, 9));
  EXPECT_FALSE(t.remove_static(mac(100), 20, 9));
  EXPECT_FALSE(t.remove_static(mac(1), 10, 1)) << "a learned entry is not removed as a static one";
  EXPECT_EQ(t.lookup(mac(100), 3, 20), std::nullopt);
  MacTable full(config(2));
  ASSERT_TRUE(full.add_static(mac(1), 1));
  ASSERT_TRUE(full.add_static(mac(2), 2));
  EXPECT_FALSE(full.add_static(mac(3), 3));
  EXPECT_EQ(full.counters().evicted_for_static, 0u);
}

// changes() is what the endpoint compares to republish its forwarding database: every
// entry added, removed, moved, or made static moves it; a refresh or a refusal does not.
// A static entry moved to another port and back (a reload) keeps the size and every
// counter as they were, and still moves it.
TEST(MacTable, EveryChangeToAnEntryIsCounted) {
  MacTable t(config());
  std::uint64_t seen = t.changes();
  auto changed = [&] {
    const bool moved = t.changes() != seen;
    seen = t.changes();
    return moved;
  };
  ASSERT_EQ(t.learn(mac(1), 1, 0), Learn::kLearned);
  EXPECT_TRUE(changed()) << "learned";
  ASSERT_EQ(t.learn(mac(1), 1, 10), Learn::kRefreshed);
  EXPECT_FALSE(changed()) << "refreshed";
  ASSERT_EQ(t.learn(mac(1), 2, 20), Learn::kMoved);
  EXPECT_TRUE(changed()) << "moved";
  ASSERT_EQ(t.learn(mac(1), 1, 30), Learn::kMoveDamped);
  EXPECT_FALSE(changed()) << "damped";
  ASSERT_EQ(t.learn(*MacAddress::parse("01:00:5e:00:00:01"), 1, 30), Learn::kRefusedMulticast);
  EXPECT_FALSE(changed()) << "refused";
  ASSERT_TRUE(t.add_static(mac(1), 2));
  EXPECT_TRUE(changed()) << "a learned entry made static, same port";
  ASSERT_TRUE(t.add_static(mac(1), 2));
  EXPECT_FALSE(changed()) << "the same static entry again";
  const std::size_t size = t.size();
  const MacTableCounters before = t.counters();
  ASSERT_TRUE(t.add_static(mac(1), 3));
  EXPECT_TRUE(changed()) << "a static entry moved to another port";
  ASSERT_TRUE(t.remove_static(mac(1), 0, 3));
  EXPECT_TRUE(changed()) << "a static entry removed";
  ASSERT_TRUE(t.add_static(mac(1), 2));
  EXPECT_TRUE(changed()) << "a static entry added back behind its first port";
  EXPECT_EQ(t.size(), size);
  EXPECT_EQ(t.counters().learned + t.counters().moved + t.counters().aged, before.learned + before.moved + before.aged)
      << "what no counter shows";
  ASSERT_EQ(t.learn(mac(2), 1, 100), Learn::kLearned);
  (void)changed();
  EXPECT_EQ(t.lookup(mac(2), 1099), PortId{1});
  EXPECT_FALSE(changed()) << "a lookup of a live entry";
  ASSERT_EQ(t.learn(mac(2), 1, 1100), Learn::kLearned) << "aged, then seen again on its port";
  EXPECT_TRUE(changed()) << "entries() hid it while it was aged";
  EXPECT_EQ(t.sweep(2100), 1u);
  EXPECT_TRUE(changed()) << "swept";
  ASSERT_EQ(t.learn(mac(3), 4, 2200), Learn::kLearned);
  (void)changed();
  EXPECT_EQ(t.forget_port(4), 1u);
  EXPECT_TRUE(changed()) << "forgotten with its port";
  EXPECT_EQ(t.forget_port(4), 0u);
  EXPECT_FALSE(changed());
}

// One port flooding random source addresses fills its own share, not the table: the
// other ports still learn, the refusals are counted, and what the flooding port already
// had stays.
TEST(MacTable, OnePortCannotTakeMoreThanItsShare) {
  MacTable t(config(64));  // max_per_port unset: a quarter of the table
  EXPECT_EQ(t.max_per_port(), 16u);
  ASSERT_TRUE(t.add_static(mac(100), 1));  // static entries are not part of any share
  for (std::uint32_t i = 0; i < 10000; ++i) {
    const Learn r = t.learn(mac(1000 + i), 1, 10);
    ASSERT_EQ(r, i < 16 ? Learn::kLearned : Learn::kRefusedPortLimit) << i;
  }
  EXPECT_EQ(t.learned_on(1), 16u);
  EXPECT_EQ(t.counters().refused_port_limit, 10000u - 16u);
  EXPECT_EQ(t.counters().refused_full, 0u);
  for (PortId p = 2; p < 4; ++p)
    for (std::uint32_t i = 0; i < 16; ++i) EXPECT_EQ(t.learn(mac(p * 100000u + i), p, 10), Learn::kLearned);
  EXPECT_EQ(t.size(), 1u + 3 * 16u);
  EXPECT_EQ(t.lookup(mac(1000), 10), PortId{1});
  // A known address cannot be moved onto a port at its share either ...
  EXPECT_EQ(t.learn(mac(200000), 1, 10), Learn::kRefusedPortLimit);
  EXPECT_EQ(t.lookup(mac(200000), 10), PortId{2});
  // ... and once the port's entries have aged, it learns again (the table reclaims them).
  EXPECT_EQ(t.learn(mac(9999999), 1, 2000), Learn::kLearned);
  EXPECT_EQ(t.learned_on(1), 1u);
}

TEST(MacTable, BehavesLikeAMapUnderRandomOperations) {
  // Reference model: std::map with the same rules (aged entries occupy room, in the table
  // and in their port's share, until a lookup or a sweep removes them; a full table or a
  // port at its share sweeps itself at most once a second), driven by random learn /
  // lookup / sweep over a small address space so probes collide and deletions shift
  // entries. Four ports with a share of 20 each in a table of 64: both limits are hit.
  MacTable::Config c = config(64);
  c.max_per_port = 20;
  MacTable t(c);
  std::map<std::uint32_t, std::pair<PortId, std::uint64_t>> ref;  // mac -> port, last seen
  auto aged = [](std::uint64_t now, std::uint64_t seen) { return now - seen >= 1000; };
  auto on_port = [&](PortId p) {
    std::uint32_t n = 0;
    for (const auto& [m, e] : ref) n += e.first == p ? 1 : 0;
    return n;
  };
  std::uint64_t last_full_sweep = 0;
  std::mt19937_64 rng(1);
  std::uint64_t now = 0;
  std::size_t learned = 0, refused = 0, refused_port = 0;
  std::map<std::uint64_t, PortId> placed_before;
  std::uint64_t changes_before = t.changes();
  for (int step = 0; step < 200000; ++step) {
    now += rng() % 4;
    const std::uint32_t m = static_cast<std::uint32_t>(rng() % 200);
    const auto port = static_cast<PortId>(rng() % 4);
    auto sweep_model = [&] {
      for (auto it = ref.begin(); it != ref.end();) it = aged(now, it->second.second) ? ref.erase(it) : std::next(it);
    };
    switch (rng() % 8) {
      case 0: case 1: case 2: case 3: {
        const Learn r = t.learn(mac(m), port, now);
        auto it = ref.find(m);
        if (it != ref.end() && aged(now, it->second.second)) {
          const PortId old = it->second.first;
          if (on_port(port) - (old == port ? 1 : 0) >= 20) {
            ASSERT_EQ(r, Learn::kRefusedPortLimit) << step;
            ref.erase(it);
            ++refused_port;
          } else {
            ASSERT_EQ(r, Learn::kLearned) << step;
            it->second = {port, now};
          }
        } else if (it == ref.end()) {
          if ((ref.size() >= 64 || on_port(port) >= 20) && (last_full_sweep == 0 || now - last_full_sweep >= 1000)) {
            last_full_sweep = now;
            sweep_model();
          }
          if (on_port(port) >= 20) {
            ASSERT_EQ(r, Learn::kRefusedPortLimit) << step;
            ++refused_port;
          } else if (ref.size() < 64) {
            ASSERT_EQ(r, Learn::kLearned) << step;
            ref[m] = {port, now};
            ++learned;
          } else {
            ASSERT_EQ(r, Learn::kRefusedFull) << step;
            ++refused;
          }
        } else if (r == Learn::kRefreshed || r == Learn::kMoved) {
          ASSERT_EQ(r == Learn::kRefreshed, it->second.first == port) << step;
          if (r == Learn::kMoved) {
            ASSERT_LT(on_port(port), 20u) << step;
          }
          it->second = {port, now};
        } else if (r == Learn::kRefusedPortLimit) {
          ASSERT_NE(it->second.first, port) << step;
          ASSERT_GE(on_port(port), 20u) << step;
          ++refused_port;
        } else {
          ASSERT_EQ(r, Learn::kMoveDamped) << step;
          ASSERT_NE(it->second.first, port) << step;
        }
        break;
      }
      case 4: case 5: case 6: {
        auto it = ref.find(m);
        const auto got = t.lookup(mac(m), now);
        if (it == ref.end()) {
          ASSERT_EQ(got, std::nullopt) << step;
        } else if (aged(now, it->second.second)) {
          ASSERT_EQ(got, std::nullopt) << step;
          ref.erase(it);
        } else {
          ASSERT_EQ(got, it->second.first) << step;
        }
        break;
      }
      default:
        t.sweep(now);
        sweep_model();
    }
    ASSERT_EQ(t.size(), ref.size()) << step;
    for (PortId p = 0; p < 4; ++p) ASSERT_EQ(t.learned_on(p), on_port(p)) << step << " port " << p;
    // A step that left changes() alone left every entry behind its port. entries(0)
    // lists aged entries too: no last_seen_ms here lies before 0.
    std::map<std::uint64_t, PortId> placed;
    for (const MacEntry& e : t.entries(0)) placed[e.mac.bits()] = e.port;
    if (t.changes() == changes_before) {
      ASSERT_EQ(placed, placed_before) << step;
    }
    placed_before = std::move(placed);
    changes_before = t.changes();
  }
  EXPECT_GT(learned, 1000u);  // the run exercised learning, ...
  EXPECT_GT(refused, 0u);     // ... a full table, ...
  EXPECT_GT(refused_port, 0u);  // ... ports at their share, ...
  EXPECT_EQ(t.counters().refused_port_limit, refused_port);
  EXPECT_GT(t.counters().aged, 1000u);  // ... and aging (with backward-shift deletion)
}

TEST(MacAddress, BitsPutTheFirstByteLowestAndRoundTrip) {
  const auto m = MacAddress::parse("02:00:00:00:00:f1");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->bits(), 0xf10000000002ULL);
  EXPECT_EQ(MacAddress::from_bits(m->bits()), *m);
  EXPECT_EQ(MacAddress::from_bits(m->bits() | (std::uint64_t{0x7fff} << 48)), *m) << "bits 48-63 are not the address";
}

}  // namespace
}  // namespace vswitch
