#include "vswitch/observability/running_topology.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
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
  ASSERT_TRUE(got.has_value()) << got.error().detail;
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
  ASSERT_TRUE(got.has_value()) << got.error().detail;
  EXPECT_EQ(got.value().text, "second, longer than the first");
  // No temporary object left behind (/dev/shm/vswitch.<sw>.topology.next.*).
  const std::string prefix = shm::object_name(sw, "topology.next").substr(1);
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm"))
    EXPECT_NE(e.path().filename().string().rfind(prefix, 0), 0u) << "left behind: " << e.path();
}

// The owner removes the name when it goes (a clean stop): nothing to read, an error.
TEST(RunningTopology, NoObjectIsAnError) {
  const std::string sw = switch_name("gone");
  {
    auto r = publish_running_topology(sw, "text", 3);
    ASSERT_TRUE(r.has_value()) << r.error();
  }
  auto got = read_running_topology(sw);
  ASSERT_FALSE(got.has_value());
  EXPECT_TRUE(got.error().absent);
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
  EXPECT_FALSE(got.error().absent);
  EXPECT_NE(got.error().detail.find("bytes of text"), std::string::npos) << got.error().detail;
}

// An object another local user made under the switch's names (/dev/shm is anyone's to
// create files in) stops no publication: the temporary name is not known in advance, and
// the rename replaces whatever has the final one.
TEST(RunningTopology, ObjectsMadeInAdvanceUnderItsNamesDoNotStopIt) {
  const std::string sw = switch_name("squat");
  auto squat_next = shm::Region::create(shm::object_name(sw, "topology.next"), shm::RegionKind::kTopology, 64, 1);
  ASSERT_TRUE(squat_next.has_value()) << squat_next.error().detail;
  auto squat = shm::Region::create(shm::object_name(sw, "topology"), shm::RegionKind::kTopology, 64, 1);
  ASSERT_TRUE(squat.has_value()) << squat.error().detail;
  squat.value().disown();  // replaced below
  auto r = publish_running_topology(sw, "the switch's own", 2);
  ASSERT_TRUE(r.has_value()) << r.error();
  auto got = read_running_topology(sw);
  ASSERT_TRUE(got.has_value()) << got.error().detail;
  EXPECT_EQ(got.value().text, "the switch's own");
  EXPECT_EQ(got.value().generation, 2u);
}

}  // namespace
}  // namespace vswitch
