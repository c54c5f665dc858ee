// The stats objects: the daemon's ("/vswitch.<switch>.stats") and one slice per endpoint
// ("/vswitch.<switch>.stats.<endpoint>"). An observer attaches them read-only and refuses
// a slice that does not pass validation (its endpoint may have written anything into it)
// without losing the others; an endpoint process keeps only its own slice mapped.
#include "vswitch/observability/stats.hpp"
#include "tests/support/proc_maps.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shm/region.hpp"

namespace vswitch {
namespace {

const std::vector<std::string> kNames = {"a", "b", "c"};
constexpr std::uint32_t kFdb = 16;
constexpr std::uint64_t kGeneration = 9;

std::string unique_switch(const char* what) {
  static std::atomic<int> n{0};
  return "sttest" + std::to_string(::getpid()) + what + std::to_string(n++);
}

bool exists(const std::string& shm_name) { return ::access(("/dev/shm" + shm_name).c_str(), F_OK) == 0; }

// The paths of every shm object this process maps (from /proc/self/maps), " (deleted)" cut.
std::set<std::string> mapped_objects() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> out;
  std::string line;
  while (std::getline(maps, line)) {
    const auto at = line.find("/dev/shm/");
    if (at == std::string::npos) continue;
    std::string path = line.substr(at + std::string("/dev/shm").size());
    if (const auto d = path.find(" (deleted)"); d != std::string::npos) path.resize(d);
    out.insert(path);
  }
  return out;
}

// A test process may map an object twice (creator and attach): only the range matters.
using test_support::permissions_at;

StatsRegion make(const std::string& sw) {
  auto s = StatsRegion::create(sw, kNames, kFdb, kGeneration);
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error());
  return std::move(s.value());
}

// The words of endpoint i's slice as its endpoint can write them (the creator's mapping).
std::uint64_t* slice_words(StatsRegion& s, std::size_t i) {
  return reinterpret_cast<std::uint64_t*>(s.slice(i)->region().payload().data());
}

TEST(Stats, CreateMakesTheDaemonsObjectAndOneSlicePerEndpoint) {
  const auto sw = unique_switch("names");
  {
    StatsRegion s = make(sw);
    EXPECT_EQ(StatsRegion::region_name(sw), "/vswitch." + sw + ".stats");
    EXPECT_EQ(StatsRegion::slice_name(sw, "b"), "/vswitch." + sw + ".stats.b");
    EXPECT_TRUE(exists(StatsRegion::region_name(sw)));
    for (const auto& n : kNames) EXPECT_TRUE(exists(StatsRegion::slice_name(sw, n))) << n;
    // The daemon's object holds its header and the state blocks, nothing an endpoint writes.
    EXPECT_EQ(s.region().payload().size(), sizeof(StatsHeader) + kNames.size() * sizeof(DaemonState));
    EXPECT_EQ(s.region().generation(), kGeneration);
    for (std::size_t i = 0; i < kNames.size(); ++i) {
      ASSERT_NE(s.slice(i), nullptr);
      EXPECT_EQ(s.slice(i)->region().name(), StatsRegion::slice_name(sw, kNames[i]));
      EXPECT_EQ(s.slice(i)->region().generation(), kGeneration);
      EXPECT_EQ(s.slice(i)->endpoint(), i);
      EXPECT_EQ(s.slice(i)->region().payload().size(), StatsSlice::bytes_for(kFdb));
    }
  }
  // The creator removes them all.
  EXPECT_FALSE(exists(StatsRegion::region_name(sw)));
  for (const auto& n : kNames) EXPECT_FALSE(exists(StatsRegion::slice_name(sw, n))) << n;
}

TEST(Stats, ReadOnlyAttachSeesWhatEachWriterWrote) {
  const auto sw = unique_switch("ro");
  StatsRegion s = make(sw);
  s.set_daemon_pid(4242);
  DaemonState d{};
  d.state = static_cast<std::uint64_t>(EndpointState::kUp);
  d.pid = 77;
  d.restarts = 3;
  s.write_daemon(1, d);
  EndpointCounters c{};
  c.loop.loops = 11;
  c.peers[0].in_frames = 5;
  s.slice(2)->write_counters(c);
  const std::vector<MacEntry> fdb = {{MacAddress{{2, 0, 0, 0, 0, 1}}, 1, 4094, false, 1234},
                                     {MacAddress{{2, 0, 0, 0, 0, 2}}, 2, 0, true, 0}};
  s.slice(0)->write_fdb(fdb, 2);

  auto ro = StatsRegion::attach(sw, kNames, shm::Access::kReadOnly);
  ASSERT_TRUE(ro.has_value()) << ro.error().detail;
  const StatsRegion& v = ro.value();
  EXPECT_EQ(v.endpoints(), 3u);
  EXPECT_EQ(v.fdb_capacity(), kFdb);
  EXPECT_EQ(v.daemon_pid(), 4242u);
  EXPECT_EQ(v.read_daemon(1).pid, 77u);
  EXPECT_EQ(v.read_daemon(1).restarts, 3u);
  EXPECT_EQ(v.read_counters(2).loop.loops, 11u);
  EXPECT_EQ(v.read_counters(2).peers[0].in_frames, 5u);
  EXPECT_EQ(v.read_counters(1).loop.loops, 0u);
  const auto f = v.read_fdb(0);
  ASSERT_TRUE(f.has_value());
  ASSERT_EQ(f->entries.size(), 2u);
  EXPECT_EQ(f->entries[0].mac, fdb[0].mac);
  EXPECT_EQ(f->entries[0].last_seen_ms, 1234u);
  EXPECT_EQ(f->entries[0].vlan, 4094u);
  EXPECT_FALSE(f->entries[0].is_static);
  EXPECT_TRUE(f->entries[1].is_static);
  EXPECT_EQ(f->entries[1].vlan, 0u);
  // Every object read-only.
  EXPECT_EQ(permissions_at(v.region().payload().data()), "r--s");
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    ASSERT_NE(v.slice(i), nullptr) << v.slice_error(i);
    EXPECT_TRUE(v.slice(i)->region().read_only());
    EXPECT_EQ(permissions_at(v.slice(i)->region().payload().data()), "r--s");
  }
}

// The reload report: a reader sees the last report whole, the running one as it begins
// and the ended one after (the same reload published twice), through a read-only mapping;
// a sequence left odd (a daemon that died writing) reads as no report, without a hang.
TEST(Stats, TheReloadReportIsReadWholeAndNeverHangs) {
  const auto sw = unique_switch("reload");
  StatsRegion s = make(sw);
  auto ro = StatsRegion::attach(sw, kNames, shm::Access::kReadOnly);
  ASSERT_TRUE(ro.has_value());
  EXPECT_EQ(ro.value().read_reload().outcome, ReloadOutcome::kNone);
  s.publish_reload(ReloadReport{1, ReloadOutcome::kRunning, 0, 0});
  ReloadReport r = ro.value().read_reload();
  EXPECT_EQ(r.reloads, 1u);
  EXPECT_EQ(r.outcome, ReloadOutcome::kRunning);
  s.publish_reload(ReloadReport{1, ReloadOutcome::kApplied, 0b101, 2});
  r = ro.value().read_reload();
  EXPECT_EQ(r.reloads, 1u);
  EXPECT_EQ(r.outcome, ReloadOutcome::kApplied);
  EXPECT_EQ(r.restarted, 0b101u);
  EXPECT_EQ(r.changes, 2u);
  // The sequence word is the daemon object's header word 7 (StatsHeader::reload_seq).
  auto* header = reinterpret_cast<std::uint64_t*>(s.region().payload().data());
  header[offsetof(StatsHeader, reload_seq) / sizeof(std::uint64_t)] |= 1;
  EXPECT_EQ(ro.value().read_reload().outcome, ReloadOutcome::kNone);
}

// The port table in a slice: nothing until vswitchd writes it, then what it wrote.
TEST(Stats, PortTableIsReadAsWritten) {
  const auto sw = unique_switch("vlans");
  StatsRegion s = make(sw);
  StatsSlice& slice = *s.slice(1);
  std::vector<PortInfo> got;
  EXPECT_EQ(slice.read_port_table(got, 3), PortTableRead::kNone);
  std::vector<PortInfo> ports(3);
  ports[0].vlans.set(0);
  ports[0].mac = MacAddress{{0x02, 0, 0, 0, 0, 0x01}};
  ports[1].vlans.set(10).set(4094);
  ports[2].vlans.set(1).set(63).set(64).set(4095);
  ports[2].mac = MacAddress{{0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54}};
  slice.write_port_table(ports);
  ASSERT_EQ(slice.read_port_table(got, 3), PortTableRead::kRead);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got, ports);
  // Asked for more ports than a slice holds: bounded, never past the table.
  ASSERT_EQ(slice.read_port_table(got, kMaxEndpoints + 5), PortTableRead::kRead);
  EXPECT_EQ(got.size(), kMaxEndpoints);
  // A multicast address in a word (no port's own; whoever wrote it) is read as none.
  ports[1].mac = MacAddress{{0x03, 0, 0, 0, 0, 0x07}};
  slice.write_port_table(ports);
  ASSERT_EQ(slice.read_port_table(got, 3), PortTableRead::kRead);
  EXPECT_FALSE(got[1].mac.has_value());
  EXPECT_EQ(got[2].mac, ports[2].mac);
}

// A reader never takes a table half rewritten: vswitchd rewrites it (each time every port
// in one VLAN with one address, a different pair) while an endpoint reads; every read it
// takes has all ports alike. (Under TSan this is also the seqlock's race check.)
TEST(Stats, APortTableReadNeverMixesTwoWrites) {
  const auto sw = unique_switch("vlanrace");
  StatsRegion s = make(sw);
  StatsSlice& slice = *s.slice(0);
  std::vector<PortInfo> first(kMaxEndpoints);
  for (auto& v : first) v.vlans.set(4094);
  slice.write_port_table(first);
  std::atomic<std::uint64_t> writes{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::vector<PortInfo> ports(kMaxEndpoints);
    for (std::size_t k = 1; !stop.load(std::memory_order_relaxed); k = k % 4093 + 1) {
      for (auto& v : ports) {
        v.vlans.reset().set(k);
        v.mac = MacAddress{{0x02, 0, 0, 0, static_cast<std::uint8_t>(k >> 8), static_cast<std::uint8_t>(k)}};
      }
      slice.write_port_table(ports);
      writes.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();  // room for whole reads between writes too, not only torn ones
    }
  });
  // Until 100 reads were taken while the writer wrote at least 20 times (or 20 s).
  std::size_t taken = 0;
  std::vector<PortInfo> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((taken < 100 || writes.load(std::memory_order_relaxed) < 20) && std::chrono::steady_clock::now() < deadline) {
    if (slice.read_port_table(got, kMaxEndpoints) != PortTableRead::kRead) continue;  // torn: nothing taken
    ++taken;
    for (const auto& v : got) ASSERT_EQ(v, got[0]) << "a read mixed two writes";
    ASSERT_EQ(got[0].vlans.count(), 1u);
    if (got[0].mac) {
      std::size_t vid = 0;
      while (vid < kVlanIdCount && !got[0].vlans.test(vid)) ++vid;
      EXPECT_EQ(got[0].mac->bytes[5], static_cast<std::uint8_t>(vid)) << "address and VLANs from one write";
    }
  }
  stop = true;
  writer.join();
  EXPECT_GE(taken, 100u);
  EXPECT_GE(writes.load(), 20u);
}

TEST(Stats, AttachNamesTheRunningEndpointCountWhenItDiffers) {
  const auto sw = unique_switch("count");
  StatsRegion s = make(sw);
  const std::vector<std::string> two = {"a", "b"};
  auto ro = StatsRegion::attach(sw, two, shm::Access::kReadOnly);
  ASSERT_FALSE(ro.has_value());
  EXPECT_EQ(ro.error().running_endpoints, 3u);
  auto none = StatsRegion::attach(unique_switch("none"), kNames, shm::Access::kReadOnly);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().running_endpoints, 0u);
  EXPECT_NE(none.error().detail.find("not found"), std::string::npos) << none.error().detail;
}

// What an endpoint may write into its own slice's headers is refused at attach, with the
// object and the problem named; the other endpoints' slices stay readable.
struct Corruption {
  const char* what;
  std::size_t word;  // in the slice header
  std::uint64_t value;
  std::string message;
};

TEST(Stats, ACorruptSliceIsRefusedAtAttachAndTheOthersStayReadable) {
  const Corruption cases[] = {
      {"magic", 0, 0x1234, "bad slice magic 0x1234"},
      {"version", 1, 1, "unsupported slice version 1, expected " + std::to_string(kStatsSliceVersion)},
      {"endpoint", 2, 0, "made for endpoint #0, expected #1"},
      {"fdb", 3, 1u << 20, "FDB capacity 1048576, the switch's is 16"},
  };
  for (const auto& k : cases) {
    const auto sw = unique_switch(k.what);
    StatsRegion s = make(sw);
    EndpointCounters c{};
    c.loop.sleeps = 9;
    s.write_counters(2, c);
    slice_words(s, 1)[k.word] = k.value;

    auto direct = StatsSlice::attach(sw, "b", 1, kFdb, kGeneration, shm::Access::kReadOnly);
    ASSERT_FALSE(direct.has_value()) << k.what;
    EXPECT_NE(direct.error().find("stats slice " + StatsRegion::slice_name(sw, "b")), std::string::npos)
        << direct.error();
    EXPECT_NE(direct.error().find(k.message), std::string::npos) << direct.error();

    auto ro = StatsRegion::attach(sw, kNames, shm::Access::kReadOnly);
    ASSERT_TRUE(ro.has_value()) << ro.error().detail;
    EXPECT_EQ(ro.value().slice(1), nullptr) << k.what;
    EXPECT_EQ(ro.value().slice_error(1), direct.error());
    ASSERT_NE(ro.value().slice(0), nullptr);
    ASSERT_NE(ro.value().slice(2), nullptr);
    EXPECT_EQ(ro.value().read_counters(2).loop.sleeps, 9u);
    EXPECT_EQ(ro.value().slice_error(2), "");
  }
}

// The endpoint program attaches its own slice by size: headers its predecessor scribbled
// on (a bug, or a compromise) do not keep the restarted endpoint from its counters; an
// object of another size is still refused.
TEST(Stats, TheEndpointsSizedAttachSurvivesItsOwnCorruptHeaders) {
  const auto sw = unique_switch("sized");
  StatsRegion s = make(sw);
  EndpointCounters c{};
  c.loop.sleeps = 7;
  s.write_counters(1, c);
  slice_words(s, 1)[0] = 0x1234;  // slice magic
  slice_words(s, 1)[2] = 0;       // endpoint index
  auto* region_header = reinterpret_cast<shm::RegionHeader*>(s.slice(1)->region().payload().data() -
                                                             shm::Region::payload_offset());
  region_header->reserved2 = 5;
  ASSERT_FALSE(StatsSlice::attach(sw, "b", 1, kFdb, kGeneration).has_value());
  auto sized = StatsSlice::attach_sized(sw, "b", 1, kFdb, kGeneration);
  ASSERT_TRUE(sized.has_value()) << sized.error();
  EXPECT_EQ(sized.value().read_counters().loop.sleeps, 7u);
  auto wrong = StatsSlice::attach_sized(sw, "b", 1, kFdb * 2, kGeneration);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_NE(wrong.error().find("expected"), std::string::npos) << wrong.error();
}

// A slice object of the wrong size, kind or generation put in place of the real one.
TEST(Stats, AShortForeignOrStaleSliceIsRefusedAtAttach) {
  struct Case {
    const char* what;
    shm::RegionKind kind;
    std::uint64_t payload;
    std::uint64_t generation;
    bool header;  // write a valid slice header
    const char* message;
  };
  const Case cases[] = {
      {"tiny", shm::RegionKind::kStatsSlice, 16, kGeneration, false, "16 bytes, smaller than its header"},
      {"short", shm::RegionKind::kStatsSlice, StatsSlice::bytes_for(kFdb) - 16, kGeneration, true,
       "bytes, expected"},
      {"long", shm::RegionKind::kStatsSlice, StatsSlice::bytes_for(kFdb) + 4096, kGeneration, true,
       "bytes, expected"},
      {"kind", shm::RegionKind::kChannel, StatsSlice::bytes_for(kFdb), kGeneration, true, "wrong region kind"},
      {"stale", shm::RegionKind::kStatsSlice, StatsSlice::bytes_for(kFdb), kGeneration + 2, true,
       "generation mismatch"},
  };
  for (const auto& k : cases) {
    const auto sw = unique_switch(k.what);
    StatsRegion s = make(sw);
    const std::string name = StatsRegion::slice_name(sw, "c");
    ASSERT_TRUE(shm::Region::remove(name));
    auto fake = shm::Region::create(name, k.kind, k.payload, k.generation);
    ASSERT_TRUE(fake.has_value()) << fake.error().detail;
    if (k.header) {
      auto* h = reinterpret_cast<std::uint64_t*>(fake->payload().data());
      h[0] = kStatsSliceMagic;
      h[1] = kStatsSliceVersion;
      h[2] = 2;
      h[3] = kFdb;
    }
    fake->publish_ready();
    auto ro = StatsRegion::attach(sw, kNames, shm::Access::kReadOnly);
    ASSERT_TRUE(ro.has_value()) << ro.error().detail;
    EXPECT_EQ(ro.value().slice(2), nullptr) << k.what;
    EXPECT_NE(ro.value().slice_error(2).find(name), std::string::npos) << ro.value().slice_error(2);
    EXPECT_NE(ro.value().slice_error(2).find(k.message), std::string::npos) << ro.value().slice_error(2);
    EXPECT_NE(ro.value().slice(0), nullptr);
  }
}

// The entry count in a slice is the endpoint's to write: a reader never goes past the
// capacity it validated at attach.
TEST(Stats, AnFdbCountPastTheCapacityIsBoundedByTheReader) {
  const auto sw = unique_switch("fdbcount");
  StatsRegion s = make(sw);
  const std::vector<MacEntry> one = {{MacAddress{{2, 0, 0, 0, 0, 1}}, 1, 0, false, 5}};
  s.write_fdb(1, one, 1);
  auto* w = slice_words(s, 1) + sizeof(StatsSliceHeader) / 8 + sizeof(EndpointCounters) / 8;
  w[2] = ~std::uint64_t{0};  // entry count
  auto ro = StatsRegion::attach(sw, kNames, shm::Access::kReadOnly);
  ASSERT_TRUE(ro.has_value()) << ro.error().detail;
  const auto f = ro.value().read_fdb(1);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->entries.size(), kFdb);
}

TEST(Stats, CreateFailingOnATakenSliceNameLeavesNothing) {
  const auto sw = unique_switch("taken");
  auto squat = shm::Region::create(StatsRegion::slice_name(sw, "c"), shm::RegionKind::kStatsSlice, 64, 1);
  ASSERT_TRUE(squat.has_value());
  auto s = StatsRegion::create(sw, kNames, kFdb, kGeneration);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().find(StatsRegion::slice_name(sw, "c")), std::string::npos) << s.error();
  EXPECT_FALSE(exists(StatsRegion::slice_name(sw, "a")));
  EXPECT_FALSE(exists(StatsRegion::slice_name(sw, "b")));
  EXPECT_FALSE(exists(StatsRegion::region_name(sw)));
}

// After fork, endpoint b keeps exactly its own slice: the daemon's object and the other
// slices are no longer in its address space, its slice is where it was, and nothing is
// unlinked (not even when the child's objects are destroyed).
TEST(Stats, KeepOnlyLeavesExactlyTheOwnSliceMapped) {
  const auto sw = unique_switch("keep");
  StatsRegion s = make(sw);
  const std::set<std::string> all = {StatsRegion::region_name(sw), StatsRegion::slice_name(sw, "a"),
                                     StatsRegion::slice_name(sw, "b"), StatsRegion::slice_name(sw, "c")};
  std::set<std::string> before;
  for (const auto& n : mapped_objects())
    if (all.count(n) != 0) before.insert(n);
  ASSERT_EQ(before, all) << "the creator maps every stats object";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = 0;
    {
      StatsRegion mine = std::move(s);  // the inherited view, destroyed in this scope
      const void* where = mine.slice(1)->region().payload().data();
      StatsSlice own = mine.keep_only(1);
      if (own.endpoint() != 1 || own.region().payload().data() != where) bad |= 1;
      if (own.region().owner()) bad |= 2;
      std::set<std::string> after;
      for (const auto& n : mapped_objects())
        if (n.rfind("/vswitch." + sw + ".", 0) == 0) after.insert(n);
      if (after != std::set<std::string>{StatsRegion::slice_name(sw, "b")}) bad |= 4;
      for (std::size_t i = 0; i < 3; ++i)
        if (mine.slice(i) != nullptr) bad |= 8;
      EndpointCounters c{};
      c.loop.loops = 31;
      own.write_counters(c);
    }  // ~StatsSlice and ~StatsRegion: they must only unmap
    ::_exit(bad);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: own slice moved or wrong, 2: still owner, 4: maps other than its own "
                                       "slice, 8: the region still hands out a slice";
  for (const auto& n : all) EXPECT_TRUE(exists(n)) << "the child unlinked " << n;
  EXPECT_EQ(s.read_counters(1).loop.loops, 31u) << "the child's writes land in the shared slice";
}

// Each death test's child is a fork of this process (the "fast" style): it inherits `s`,
// creates nothing, and its abort leaves every object to this process, which removes them.
TEST(StatsDeathTest, CallsOnWhatKeepOnlyDroppedAbort) {
  GTEST_FLAG_SET(death_test_style, "fast");
  const auto sw = unique_switch("dead");
  StatsRegion s = make(sw);
  EXPECT_DEATH(
      {
        StatsSlice own = s.keep_only(1);
        (void)s.read_counters(0);
      },
      "read_counters of endpoint #0: not mapped in this process");
  EXPECT_DEATH(
      {
        StatsSlice own = s.keep_only(1);
        (void)s.read_counters(1);  // moved out: only `own` has it now
      },
      "read_counters of endpoint #1: not mapped");
  EXPECT_DEATH(
      {
        StatsSlice own = s.keep_only(1);
        s.write_counters(2, EndpointCounters{});
      },
      "write_counters of endpoint #2: not mapped");
  EXPECT_DEATH(
      {
        StatsSlice own = s.keep_only(0);
        s.write_fdb(1, {}, 0);
      },
      "write_fdb of endpoint #1: not mapped");
  EXPECT_DEATH(
      {
        StatsSlice own = s.keep_only(0);
        (void)s.read_daemon(0);
      },
      "the daemon's stats object is not mapped");
  EXPECT_DEATH(
      {
        StatsSlice own = s.keep_only(0);
        s.write_daemon(0, DaemonState{});
      },
      "the daemon's stats object is not mapped");
  EXPECT_DEATH(
      {
        StatsSlice own = s.keep_only(2);
        (void)s.daemon_pid();
      },
      "the daemon's stats object is not mapped");
  // The parent's view is untouched by what its death-test children dropped.
  EXPECT_EQ(s.read_counters(0).loop.loops, 0u);
}

}  // namespace
}  // namespace vswitch
