#include "shm/region.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>

#include "shm/channel.hpp"
#include "tests/support/proc_maps.hpp"

namespace vswitch::shm {
namespace {

std::string unique_name(const char* what) {
  return "/vswitch-test." + std::to_string(::getpid()) + "." + what;
}

RegionHeader& header_of(const Region& r) {
  return *reinterpret_cast<RegionHeader*>(r.payload().data() - Region::payload_offset());
}

TEST(Region, CreateThenAttachSeesTheSamePayload) {
  const auto name = unique_name("basic");
  auto created = Region::create(name, RegionKind::kChannel, 4096, 7);
  ASSERT_TRUE(created.has_value()) << created.error().detail;
  created->publish_ready();
  std::memcpy(created->payload().data(), "hello", 5);
  auto attached = Region::attach(name, RegionKind::kChannel, 7);
  ASSERT_TRUE(attached.has_value()) << attached.error().detail;
  EXPECT_EQ(attached->payload().size(), 4096u);
  EXPECT_EQ(std::memcmp(attached->payload().data(), "hello", 5), 0);
  EXPECT_EQ(attached->generation(), 7u);
}

// rename_to replaces an object of the new name in one step; the renamed region owns the
// new name (its destructor removes it) and the old name is free.
TEST(Region, RenameReplacesTheObjectOfThatName) {
  const auto from = unique_name("rename-from");
  const auto to = unique_name("rename-to");
  auto old = Region::create(to, RegionKind::kStats, 64, 1);
  ASSERT_TRUE(old.has_value()) << old.error().detail;
  old->publish_ready();
  old->disown();  // replaced below: it must not remove the name afterwards
  {
    auto r = Region::create(from, RegionKind::kStats, 128, 2);
    ASSERT_TRUE(r.has_value()) << r.error().detail;
    r->publish_ready();
    auto st = r->rename_to(to);
    ASSERT_TRUE(st.has_value()) << st.error();
    EXPECT_EQ(r->name(), to);
    auto attached = Region::attach(to, RegionKind::kStats);
    ASSERT_TRUE(attached.has_value()) << attached.error().detail;
    EXPECT_EQ(attached->generation(), 2u);
    EXPECT_FALSE(Region::attach(from, RegionKind::kStats).has_value());
  }
  EXPECT_FALSE(Region::remove(to)) << "the renamed region did not remove its new name";
}

// A test process may map an object twice (creator and attach): only the range matters.
using test_support::permissions_at;

// An observer must not be able to change what it observes: a read-only attach is a
// read-only, shared mapping of an object opened read-only.
TEST(Region, ReadOnlyAttachMapsTheObjectReadOnly) {
  const auto name = unique_name("ro");
  auto created = Region::create(name, RegionKind::kStats, 4096, 5);
  ASSERT_TRUE(created.has_value()) << created.error().detail;
  created->publish_ready();
  std::memcpy(created->payload().data(), "seen", 4);
  {
    auto rw = Region::attach(name, RegionKind::kStats, 5);
    ASSERT_TRUE(rw.has_value()) << rw.error().detail;
    EXPECT_FALSE(rw->read_only());
  }
  auto ro = Region::attach(name, RegionKind::kStats, 5, Access::kReadOnly);
  ASSERT_TRUE(ro.has_value()) << ro.error().detail;
  EXPECT_TRUE(ro->read_only());
  EXPECT_EQ(std::memcmp(ro->payload().data(), "seen", 4), 0);
  EXPECT_EQ(permissions_at(ro->payload().data()), "r--s");
  EXPECT_EQ(permissions_at(created->payload().data()), "rw-s");
}

// The store faults: SIGSEGV. Under AddressSanitizer its handler reports the SEGV and
// aborts (abort_on_error=1), so there the process dies of SIGABRT saying "SEGV"; under
// qemu-user (the aarch64 run) the emulator turns the guest's fault into SIGABRT as well.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VSWITCH_TEST_UNDER_ASAN 1
#endif
#endif
bool killed_by_a_fault(int status) {
  return WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGABRT);
}
#if defined(VSWITCH_TEST_UNDER_ASAN)
constexpr const char* kFaultMessage = "SEGV";
#else
constexpr const char* kFaultMessage = "";
#endif

TEST(RegionDeathTest, StoreThroughAReadOnlyAttachFaults) {
  GTEST_FLAG_SET(death_test_style, "fast");
  const auto name = unique_name("rofault");
  auto created = Region::create(name, RegionKind::kChannel, 4096, 1);
  ASSERT_TRUE(created.has_value()) << created.error().detail;
  created->publish_ready();
  EXPECT_EXIT(
      {
        auto ro = Region::attach(name, RegionKind::kChannel, 1, Access::kReadOnly);
        if (!ro) std::_Exit(3);
        *reinterpret_cast<volatile std::byte*>(ro->payload().data()) = std::byte{1};
        std::_Exit(0);
      },
      killed_by_a_fault, kFaultMessage);
}

TEST(Channel, ReadOnlyAttachReadsTheRingIndicesThroughAReadOnlyMapping) {
  const auto name = unique_name("rochan");
  auto created = Channel::create(ChannelSpec{name, 4096, 1000, 2});
  ASSERT_TRUE(created.has_value()) << created.error();
  auto producer = created->producer(nullptr);
  const char frame[] = "frame";
  ASSERT_EQ(producer.try_push(std::as_bytes(std::span(frame))), Reserve::kReserved);
  producer.publish();
  auto ro = Channel::attach(name, 2, Access::kReadOnly);
  ASSERT_TRUE(ro.has_value()) << ro.error();
  EXPECT_TRUE(ro->region().read_only());
  EXPECT_EQ(ro->area().snapshot().head, created->area().snapshot().head);
  EXPECT_NE(ro->area().snapshot().head, 0u);
  EXPECT_EQ(permissions_at(ro->region().payload().data()), "r--s");
}

TEST(Region, IsCreatedWithMode0600) {
  const auto name = unique_name("mode");
  auto created = Region::create(name, RegionKind::kChannel, 4096, 1);
  ASSERT_TRUE(created.has_value());
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Region, CreatorUnlinksOnDestruction) {
  const auto name = unique_name("unlink");
  { auto created = Region::create(name, RegionKind::kChannel, 4096, 1); ASSERT_TRUE(created.has_value()); }
  auto attached = Region::attach(name, RegionKind::kChannel);
  ASSERT_FALSE(attached.has_value());
  EXPECT_EQ(attached.error().code, AttachError::kNotFound);
}

TEST(Region, SecondCreateOfTheSameNameFails) {
  const auto name = unique_name("twice");
  auto first = Region::create(name, RegionKind::kChannel, 4096, 1);
  ASSERT_TRUE(first.has_value());
  auto second = Region::create(name, RegionKind::kChannel, 4096, 1);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, CreateError::kExists);
  // The failed create must not have removed the first one's name.
  EXPECT_TRUE(Region::attach(name, RegionKind::kChannel).has_value() ||
              Region::attach(name, RegionKind::kChannel).error().code == AttachError::kNotInitialised);
}

TEST(Region, AttachBeforePublishReadyIsRefused) {
  const auto name = unique_name("early");
  auto created = Region::create(name, RegionKind::kChannel, 4096, 1);
  ASSERT_TRUE(created.has_value());
  auto attached = Region::attach(name, RegionKind::kChannel);
  ASSERT_FALSE(attached.has_value());
  EXPECT_EQ(attached.error().code, AttachError::kNotInitialised);
}

// Start valid, break one header field per case; each gives its own error.
struct HeaderCase {
  const char* name;
  std::function<void(RegionHeader&)> corrupt;
  AttachError expected;
};

TEST(Region, EveryBrokenHeaderFieldHasItsOwnError) {
  const std::vector<HeaderCase> cases{
      {"magic", [](RegionHeader& h) { h.magic ^= 1; }, AttachError::kBadMagic},
      {"magic zero", [](RegionHeader& h) { h.magic = 0; }, AttachError::kNotInitialised},
      {"version", [](RegionHeader& h) { h.layout_version = 99; }, AttachError::kBadVersion},
      {"header_bytes", [](RegionHeader& h) { h.header_bytes = 32; }, AttachError::kBadHeaderSize},
      {"region_bytes", [](RegionHeader& h) { h.region_bytes += 4096; }, AttachError::kBadRegionSize},
      {"payload_offset", [](RegionHeader& h) { h.payload_offset = 128; }, AttachError::kBadPayloadBounds},
      {"payload_bytes", [](RegionHeader& h) { h.payload_bytes = ~std::uint64_t{0}; }, AttachError::kBadPayloadBounds},
      {"kind", [](RegionHeader& h) { h.kind = 2; }, AttachError::kBadKind},
      {"reserved", [](RegionHeader& h) { h.reserved = 1; }, AttachError::kBadReservedField},
      {"generation", [](RegionHeader& h) { h.generation = 8; }, AttachError::kGenerationMismatch},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto name = unique_name("hdr");
    auto created = Region::create(name, RegionKind::kChannel, 4096, 7);
    ASSERT_TRUE(created.has_value());
    created->publish_ready();
    c.corrupt(header_of(*created));
    auto attached = Region::attach(name, RegionKind::kChannel, 7);
    ASSERT_FALSE(attached.has_value());
    EXPECT_EQ(attached.error().code, c.expected) << attached.error().detail;
    EXPECT_NE(attached.error().detail.find(name), std::string::npos) << attached.error().detail;
  }
}

TEST(Region, ObjectSmallerThanAHeaderIsRefused) {
  const auto name = unique_name("tiny");
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 16), 0);
  ::close(fd);
  auto attached = Region::attach(name, RegionKind::kChannel);
  Region::remove(name);
  ASSERT_FALSE(attached.has_value());
  EXPECT_EQ(attached.error().code, AttachError::kTooSmall);
}

TEST(Region, TruncatedObjectDisagreesWithItsHeader) {
  const auto name = unique_name("trunc");
  auto created = Region::create(name, RegionKind::kChannel, 8192, 1);
  ASSERT_TRUE(created.has_value());
  created->publish_ready();
  const int fd = ::shm_open(name.c_str(), O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);  // a peer shrinks it under us
  ::close(fd);
  auto attached = Region::attach(name, RegionKind::kChannel);
  ASSERT_FALSE(attached.has_value());
  EXPECT_EQ(attached.error().code, AttachError::kBadRegionSize);
}

// The ring header inside a channel region, broken one field at a time.
TEST(Channel, EveryBrokenRingHeaderFieldHasItsOwnError) {
  struct RingCase {
    const char* name;
    std::function<void(RingHeader&)> corrupt;
    RingAttachError expected;
  };
  const std::vector<RingCase> cases{
      {"capacity not power of two", [](RingHeader& h) { h.capacity = 3000; }, RingAttachError::kCapacityNotPowerOfTwo},
      {"capacity too small", [](RingHeader& h) { h.capacity = 32; }, RingAttachError::kCapacityOutOfRange},
      {"capacity other power of two", [](RingHeader& h) { h.capacity = 2048; }, RingAttachError::kAreaSizeMismatch},
      {"max payload", [](RingHeader& h) { h.max_payload = 5000; }, RingAttachError::kMaxPayloadTooLarge},
      {"max payload zero", [](RingHeader& h) { h.max_payload = 0; }, RingAttachError::kMaxPayloadTooLarge},
      {"data offset", [](RingHeader& h) { h.data_offset = 64; }, RingAttachError::kBadDataOffset},
      {"reserved", [](RingHeader& h) { h.reserved[3] = 1; }, RingAttachError::kReservedNotZero},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto name = unique_name("ring");
    auto created = Channel::create(ChannelSpec{name, 4096, 1000, 3});
    ASSERT_TRUE(created.has_value()) << created.error();
    auto* rh = reinterpret_cast<RingHeader*>(created->region().payload().data());
    c.corrupt(*rh);
    auto attached = Channel::attach(name, 3);
    ASSERT_FALSE(attached.has_value());
    EXPECT_NE(attached.error().find(std::string(to_string(c.expected))), std::string::npos)
        << attached.error();
  }
}

}  // namespace
}  // namespace vswitch::shm
