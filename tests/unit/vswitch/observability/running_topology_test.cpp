#include "vswitch/observability/running_topology.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "shm/fabric.hpp"

namespace vswitch {
namespace {

std::string switch_name(const char* what) { return "rt-" + std::to_string(::getpid()) + "-" + what; }

TEST(RunningTopology, WhatIsPublishedIsReadBackWithItsGeneration) {
  const std::string sw = switch_name("basic");
  auto r = publish_running_topology(sw, "[switch]\nname = \"x\"\n", 41);
  ASSERT_TRUE(r.has_value()) << r.error();
  auto got = read_running_topology(sw);
  ASSERT_TRUE(got.has_value()) << got.error();
  EXPECT_EQ(got.value().text, "[switch]\nname = \"x\"\n");
  EXPECT_EQ(got.value().generation, 41u);
}

// A reload's publication replaces the text in one rename: the reader sees the new text,
// and the old region, disowned, does not take the name with it when it goes.
TEST(RunningTopology, ARepublicationReplacesTheTextAndKeepsTheName) {
  const std::string sw = switch_name("replace");
  std::optional<shm::Region> held;
  auto first = publish_running_topology(sw, "first", 7);
  ASSERT_TRUE(first.has_value()) << first.error();
  held.emplace(std::move(first.value()));
  auto second = publish_running_topology(sw, "second, longer than the first", 7);
  ASSERT_TRUE(second.has_value()) << second.error();
  held->disown();
  held.reset();
  auto got = read_running_topology(sw);
  ASSERT_TRUE(got.has_value()) << got.error();
  EXPECT_EQ(got.value().text, "second, longer than the first");
  EXPECT_FALSE(shm::Region::remove(shm::object_name(sw, "topology.next"))) << "the temporary name was left behind";
}

// The owner removes the name when it goes (a clean stop): nothing to read, an error.
TEST(RunningTopology, NoObjectIsAnError) {
  const std::string sw = switch_name("gone");
  {
    auto r = publish_running_topology(sw, "text", 3);
    ASSERT_TRUE(r.has_value()) << r.error();
  }
  EXPECT_FALSE(read_running_topology(sw).has_value());
}

// A length word past the object's end (written by whoever could write the object) is an
// error, not a read past the mapping.
TEST(RunningTopology, ALengthPastTheObjectIsRefused) {
  const std::string sw = switch_name("corrupt");
  auto r = publish_running_topology(sw, "0123456789", 5);
  ASSERT_TRUE(r.has_value()) << r.error();
  const std::uint64_t bogus = std::uint64_t{1} << 40;
  std::memcpy(r.value().payload().data(), &bogus, sizeof bogus);
  auto got = read_running_topology(sw);
  ASSERT_FALSE(got.has_value());
  EXPECT_NE(got.error().find("bytes of text"), std::string::npos) << got.error();
}

// A name left by a vswitchd killed between creating and renaming does not stop the next
// publication.
TEST(RunningTopology, ATemporaryObjectLeftBehindIsReplaced) {
  const std::string sw = switch_name("left");
  auto left = shm::Region::create(shm::object_name(sw, "topology.next"), shm::RegionKind::kTopology, 64, 1);
  ASSERT_TRUE(left.has_value()) << left.error().detail;
  left.value().disown();
  auto r = publish_running_topology(sw, "after a crash", 2);
  ASSERT_TRUE(r.has_value()) << r.error();
  auto got = read_running_topology(sw);
  ASSERT_TRUE(got.has_value()) << got.error();
  EXPECT_EQ(got.value().text, "after a crash");
}

}  // namespace
}  // namespace vswitch
