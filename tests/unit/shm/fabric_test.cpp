#include "shm/fabric.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <cstring>

namespace vswitch::shm {
namespace {

FabricSpec spec3(const char* tag) {
  FabricSpec s;
  s.name = std::string("t") + std::to_string(::getpid()) + tag;
  s.endpoints = {"a", "b", "c"};
  s.ring_bytes = 4096;
  s.max_payload = 1500;
  s.generation = 11;
  return s;
}

TEST(Fabric, CreatesOneChannelPerOrderedPair) {
  auto f = Fabric::create(spec3("pairs"));
  ASSERT_TRUE(f.has_value()) << f.error();
  for (std::size_t a = 0; a < 3; ++a)
    for (std::size_t b = 0; b < 3; ++b) {
      if (a == b) {
        EXPECT_EQ(f->channel(a, b), nullptr);
      } else {
        ASSERT_NE(f->channel(a, b), nullptr);
        EXPECT_EQ(f->channel(a, b)->region().name(), f->spec().channel_name(a, b));
      }
    }
  EXPECT_EQ(f->spec().total_bytes(), 6 * (64 + RingArea::bytes_for(4096)));
}

// A peer maps every channel it shares read-write, headers included. One that writes a bad
// header field must not keep the other endpoint from attaching again after a restart: the
// endpoint program attaches by size only, with the geometry vswitchd told it.
TEST(Fabric, AttachSizedIgnoresHeadersAPeerCorrupted) {
  const auto spec = spec3("sized");
  auto f = Fabric::create(spec);
  ASSERT_TRUE(f.has_value()) << f.error();
  for (std::size_t other : {0u, 2u})
    for (auto [from, to] : {std::pair<std::size_t, std::size_t>{1, other}, {other, 1}}) {
      std::byte* payload = f->channel(from, to)->region().payload().data();
      auto* region_header = reinterpret_cast<RegionHeader*>(payload - Region::payload_offset());
      region_header->reserved2 = 1;
      region_header->generation = 0;
      auto* ring_header = reinterpret_cast<RingHeader*>(payload);
      ring_header->capacity = 7;
      ring_header->reserved[0] = 1;
    }
  EXPECT_FALSE(Fabric::attach(spec, 1).has_value());  // the validating attach refuses them
  auto b = Fabric::attach_sized(spec, 1);
  ASSERT_TRUE(b.has_value()) << b.error();
  EXPECT_EQ(b->channel(0, 2), nullptr);
  EXPECT_EQ(b->channel(0, 1)->area().capacity(), spec.ring_bytes);
  FrameProducer p = f->channel(0, 1)->producer(nullptr);
  FrameConsumer c = b->channel(0, 1)->consumer(nullptr);
  const char msg[] = "still a frame";
  ASSERT_EQ(p.try_push(std::as_bytes(std::span(msg))), Reserve::kReserved);
  p.publish();
  PopResult r = c.peek();
  ASSERT_EQ(r.status, Pop::kRecord);
  EXPECT_EQ(std::memcmp(r.payload.data(), msg, sizeof msg), 0);
}

// The size is what it trusts, and only the objects' owner can change it: an object of
// another size (another run's geometry, or not the switch's) is refused.
TEST(Fabric, AttachSizedRefusesAnObjectOfAnotherSize) {
  const auto spec = spec3("size");
  auto f = Fabric::create(spec);
  ASSERT_TRUE(f.has_value()) << f.error();
  auto bigger = spec;
  bigger.ring_bytes = 8192;
  auto b = Fabric::attach_sized(bigger, 1);
  ASSERT_FALSE(b.has_value());
  EXPECT_NE(b.error().find("expected"), std::string::npos) << b.error();
}

TEST(Fabric, EndpointAttachesOnlyItsOwnChannelsAndDataFlows) {
  const auto spec = spec3("attach");
  auto f = Fabric::create(spec);
  ASSERT_TRUE(f.has_value()) << f.error();
  auto b = Fabric::attach(spec, 1);
  ASSERT_TRUE(b.has_value()) << b.error();
  EXPECT_NE(b->channel(0, 1), nullptr);
  EXPECT_NE(b->channel(1, 2), nullptr);
  EXPECT_EQ(b->channel(0, 2), nullptr);  // a <-> c is none of b's business
  EXPECT_EQ(b->channel(2, 0), nullptr);

  FrameProducer p = f->channel(0, 1)->producer(nullptr);
  FrameConsumer c = b->channel(0, 1)->consumer(nullptr);
  const char msg[] = "frame from a to b";
  ASSERT_EQ(p.try_push(std::as_bytes(std::span(msg))), Reserve::kReserved);
  p.publish();
  PopResult r = c.peek();
  ASSERT_EQ(r.status, Pop::kRecord);
  EXPECT_EQ(std::memcmp(r.payload.data(), msg, sizeof msg), 0);
}

// What an endpoint process does with the fabric it inherits from vswitchd by fork().
TEST(Fabric, ForkedEndpointKeepsOnlyItsChannelsAndNeverUnlinks) {
  const auto spec = spec3("keep");
  auto f = Fabric::create(spec);
  ASSERT_TRUE(f.has_value()) << f.error();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = 0;
    {
      Fabric mine = std::move(f.value());  // the creator's objects, as the child has them
      mine.keep_only(1);
      if (mine.channel(0, 1) == nullptr || mine.channel(1, 0) == nullptr || mine.channel(1, 2) == nullptr ||
          mine.channel(2, 1) == nullptr)
        bad |= 1;
      if (mine.channel(0, 2) != nullptr || mine.channel(2, 0) != nullptr) bad |= 2;
      std::ifstream in("/proc/self/maps");
      std::stringstream maps;
      maps << in.rdbuf();
      if (maps.str().find(spec.channel_name(0, 2)) != std::string::npos ||
          maps.str().find(spec.channel_name(2, 0)) != std::string::npos)
        bad |= 4;  // still mapped
      if (maps.str().find(spec.channel_name(0, 1)) == std::string::npos) bad |= 8;
    }  // ~Fabric in the child: must unmap only
    ::_exit(bad);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: own channel missing, 2: other pair kept, 4: other pair still "
                                       "mapped, 8: own channel not mapped";
  for (std::size_t a = 0; a < 3; ++a)
    for (std::size_t b = 0; b < 3; ++b)
      if (a != b) {
        EXPECT_TRUE(Channel::attach(spec.channel_name(a, b)).has_value()) << "child unlinked " << a << b;
      }
}

TEST(Fabric, TooLittleMemoryFailsClearlyAndCreatesNothing) {
  auto spec = spec3("mem");
  sys::MemoryInfo tiny{10 * 1024, 1ULL << 40};
  auto f = Fabric::create(spec, tiny);
  ASSERT_FALSE(f.has_value());
  EXPECT_NE(f.error().find("3 endpoints need 6 channels"), std::string::npos) << f.error();
  EXPECT_NE(f.error().find("lower ring_bytes"), std::string::npos) << f.error();
  EXPECT_FALSE(Channel::attach(spec.channel_name(0, 1)).has_value());
}

TEST(Fabric, StaleGenerationIsRefusedOnAttach) {
  const auto spec = spec3("gen");
  auto f = Fabric::create(spec);
  ASSERT_TRUE(f.has_value());
  auto stale = spec;
  stale.generation = 10;
  auto b = Fabric::attach(stale, 1);
  ASSERT_FALSE(b.has_value());
  EXPECT_NE(b.error().find("generation"), std::string::npos) << b.error();
}

TEST(Fabric, SecondFabricWithTheSameNameIsRefused) {
  const auto spec = spec3("dup");
  auto f = Fabric::create(spec);
  ASSERT_TRUE(f.has_value());
  auto g = Fabric::create(spec);
  ASSERT_FALSE(g.has_value());
  EXPECT_NE(g.error().find("exist"), std::string::npos) << g.error();
  // The first fabric is untouched.
  EXPECT_TRUE(Fabric::attach(spec, 2).has_value());
}

TEST(Fabric, InvalidSpecsAreRefused) {
  auto s = spec3("bad");
  s.endpoints = {"a"};
  EXPECT_FALSE(Fabric::create(s).has_value());
  s.endpoints = {"a", "a"};
  EXPECT_NE(Fabric::create(s).error().find("duplicate"), std::string::npos);
  s.endpoints = {"a", "b/c"};
  EXPECT_FALSE(Fabric::create(s).has_value());
}

}  // namespace
}  // namespace vswitch::shm
