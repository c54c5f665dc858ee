// The back-end driven the way QEMU 7.2 drives it (the message order its vhost-user-net sends), with the
// guest's RAM in a memfd: negotiation, memory table, vring setup, a TX frame through the
// running queue, GET_VRING_BASE; then the protocol violations that must close the
// connection.
#include "endpoints/vhost_user/backend.hpp"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "endpoints/virtio/net_queues.hpp"
#include "tests/support/guest_driver.hpp"

namespace vswitch::endpoints::vhost_user {
namespace {

using test::GuestDriver;
constexpr std::uint64_t kQemuAddr = 0x7f1200000000;  // where "QEMU" has guest RAM mapped

Message msg(Request r, Payload p = std::monostate{}, std::vector<sys::Fd> fds = {}) {
  return Message{r, false, std::move(p), std::move(fds)};
}
std::vector<sys::Fd> one(int fd) {
  std::vector<sys::Fd> v;
  v.emplace_back(fd);
  return v;
}

struct Handshake {
  GuestDriver guest{8, true, 1 << 20, /*shared=*/true};
  Backend backend{256};

  std::uint64_t qemu(std::uint64_t gpa) const { return kQemuAddr + (gpa - GuestDriver::kBase); }

  void ok(Message m) {
    auto r = backend.handle(std::move(m));
    ASSERT_TRUE(r.has_value()) << r.error();
  }
  MemTable table(std::uint64_t size) const {
    return MemTable{{MemRegion{GuestDriver::kBase, size, kQemuAddr, 0}}};
  }
  void negotiate() {
    ok(msg(Request::kSetFeatures, kOfferedFeatures));
    ok(msg(Request::kSetOwner));
    ok(msg(Request::kSetMemTable, table(guest.bytes()), one(::dup(guest.memfd()))));
  }
  void setup_vring(std::uint32_t i) {
    ok(msg(Request::kSetVringNum, VringState{i, 8}));
    ok(msg(Request::kSetVringBase, VringState{i, 0}));
    const auto& l = guest.layout();
    ok(msg(Request::kSetVringAddr, VringAddr{i, 0, qemu(l.desc_gpa), qemu(l.used_gpa), qemu(l.avail_gpa), 0}));
    ok(msg(Request::kSetVringKick, VringFile{i, true}, one(::eventfd(0, EFD_CLOEXEC))));
    ok(msg(Request::kSetVringCall, VringFile{i, true}, one(::eventfd(0, EFD_CLOEXEC))));
  }
};

TEST(VhostUserBackend, QemuStyleSetupRunsTheQueue) {
  Handshake h;
  auto f = h.backend.handle(msg(Request::kGetFeatures));
  ASSERT_TRUE(f.has_value());
  ASSERT_TRUE(f->reply.has_value());
  std::uint64_t offered;
  std::memcpy(&offered, f->reply->data() + kHeaderBytes, 8);
  EXPECT_EQ(offered, kOfferedFeatures);
  EXPECT_TRUE(offered & kFeatureMrgRxbuf);
  EXPECT_TRUE(offered & kFeatureEventIdx);
  h.negotiate();
  h.setup_vring(kTxQueue);
  EXPECT_EQ(h.backend.queue(kTxQueue), nullptr) << "with PROTOCOL_FEATURES a ring starts disabled";
  h.ok(msg(Request::kSetVringEnable, VringState{kTxQueue, 1}));
  virtio::SplitQueue* q = h.backend.queue(kTxQueue);
  ASSERT_NE(q, nullptr);
  EXPECT_GE(h.backend.kick_fd(kTxQueue), 0);

  // The guest transmits one frame; the back-end sees it through its own mapping.
  std::vector<std::byte> packet(virtio::kNetHeaderBytes + 60, std::byte{0x5a});
  virtio::write(virtio::NetHeader{}, std::span<std::byte, virtio::kNetHeaderBytes>(packet.data(), 12));
  const auto gpa = h.guest.alloc(packet.size());
  std::memcpy(h.guest.host(gpa), packet.data(), packet.size());
  h.guest.set_desc(0, virtio::Descriptor{gpa, static_cast<std::uint32_t>(packet.size()), 0, 0});
  h.guest.make_available(0);
  std::vector<std::byte> out(2048);
  virtio::NetQueueCounters c;
  const auto r = virtio::tx_pop(*q, out, virtio::TxOffloads{}, c);
  ASSERT_EQ(r.status, virtio::TxResult::Status::kFrame);
  EXPECT_EQ(r.bytes, packet.size());
  EXPECT_EQ(std::memcmp(out.data(), packet.data(), packet.size()), 0);
  q->publish_used();
  EXPECT_EQ(h.guest.used_idx(), 1);

  // GET_VRING_BASE stops the ring and says where it is.
  auto base = h.backend.handle(msg(Request::kGetVringBase, VringState{kTxQueue, 0}));
  ASSERT_TRUE(base.has_value());
  VringState s;
  std::memcpy(&s, base->reply->data() + kHeaderBytes, sizeof s);
  EXPECT_EQ(s.num, 1u);
  EXPECT_EQ(h.backend.queue(kTxQueue), nullptr);
}

TEST(VhostUserBackend, ReplyAckWhenAsked) {
  Handshake h;
  h.ok(msg(Request::kSetProtocolFeatures, kProtocolReplyAck));
  Message m = msg(Request::kSetOwner);
  m.need_reply = true;
  auto r = h.backend.handle(std::move(m));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->reply.has_value());
  std::uint64_t status;
  std::memcpy(&status, r->reply->data() + kHeaderBytes, 8);
  EXPECT_EQ(status, 0u);
}

// VHOST_USER_NET_SET_MTU: the MTU a front-end gives its guest is accepted up to the
// port's, answered with a non-zero status above it (QEMU then does not start the device),
// and forgotten with the front-end.
TEST(VhostUserBackend, NetSetMtuIsAcceptedUpToThePortsMtu) {
  Handshake h;
  Backend port_9000{256, kDefaultMaxGuestMemory, 9000};
  EXPECT_TRUE(kOfferedFeatures & kFeatureMtu);
  EXPECT_TRUE(kOfferedProtocolFeatures & kProtocolNetMtu);
  auto status_of = [](sys::Result<Backend::Outcome, std::string>& r) {
    std::uint64_t status = ~std::uint64_t{0};
    if (r.has_value() && r->reply) std::memcpy(&status, r->reply->data() + kHeaderBytes, 8);
    return status;
  };
  auto set_mtu = [](Backend& b, std::uint64_t mtu) {
    Message m = msg(Request::kNetSetMtu, mtu);
    m.need_reply = true;
    return b.handle(std::move(m));
  };
  ASSERT_TRUE(port_9000.handle(msg(Request::kSetProtocolFeatures, kProtocolReplyAck | kProtocolNetMtu)).has_value());
  EXPECT_EQ(port_9000.mtu(), 0u);
  auto ok = set_mtu(port_9000, 9000);
  EXPECT_EQ(status_of(ok), 0u);
  EXPECT_EQ(port_9000.mtu(), 9000u);
  EXPECT_NE(ok->notice.find("9000"), std::string::npos);
  auto above = set_mtu(port_9000, 9001);
  ASSERT_TRUE(above.has_value()) << "a refused MTU is an answer, not a broken session";
  EXPECT_NE(status_of(above), 0u);
  EXPECT_NE(above->notice.find("refused"), std::string::npos) << above->notice;
  EXPECT_EQ(port_9000.mtu(), 9000u) << "a refused MTU leaves the accepted one";
  auto small = set_mtu(port_9000, 67);
  EXPECT_NE(status_of(small), 0u);
  auto low = set_mtu(port_9000, 68);
  EXPECT_EQ(status_of(low), 0u);
  EXPECT_EQ(port_9000.mtu(), 68u);
  port_9000.reset();
  EXPECT_EQ(port_9000.mtu(), 0u) << "the next front-end starts with none";

  // Without REPLY_ACK there is no way to say no but to end the session.
  EXPECT_FALSE(port_9000.handle(msg(Request::kNetSetMtu, std::uint64_t{9001})).has_value());
  EXPECT_TRUE(port_9000.handle(msg(Request::kNetSetMtu, std::uint64_t{1500})).has_value());
  EXPECT_EQ(port_9000.mtu(), 1500u);
}

TEST(VhostUserBackend, ProtocolViolationsAreErrors) {
  {
    Handshake h;
    EXPECT_FALSE(h.backend.handle(msg(Request::kSetFeatures, kOfferedFeatures | (1ull << 40))).has_value());
    EXPECT_FALSE(h.backend.handle(msg(Request::kSetFeatures, kFeatureMrgRxbuf)).has_value()) << "no VERSION_1";
    EXPECT_FALSE(h.backend.handle(msg(Request::kSetProtocolFeatures, std::uint64_t{1})).has_value());
  }
  {
    Handshake h;  // a region larger than the file behind it
    h.ok(msg(Request::kSetFeatures, kOfferedFeatures));
    auto r = h.backend.handle(msg(Request::kSetMemTable, h.table(h.guest.bytes() * 2), one(::dup(h.guest.memfd()))));
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().find("shorter"), std::string::npos) << r.error();
  }
  {
    Handshake h;  // ring addresses outside guest memory
    h.negotiate();
    h.ok(msg(Request::kSetVringNum, VringState{0, 8}));
    h.ok(msg(Request::kSetVringEnable, VringState{0, 1}));
    h.ok(msg(Request::kSetVringKick, VringFile{0, true}, one(::eventfd(0, EFD_CLOEXEC))));
    auto r = h.backend.handle(msg(Request::kSetVringAddr, VringAddr{0, 0, 0x1000, 0x2000, 0x3000, 0}));
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().find("not in guest memory"), std::string::npos) << r.error();
  }
  {
    Handshake h;  // a queue larger than the endpoint's configured limit (256), and polling mode
    EXPECT_FALSE(h.backend.handle(msg(Request::kSetVringNum, VringState{0, 1024})).has_value());
    EXPECT_FALSE(h.backend.handle(msg(Request::kSetVringKick, VringFile{0, false})).has_value());
  }
}

// virtio 1.x 5.1.3.1: each offered feature that requires another is refused without it,
// the missing dependency named; with it the same set is accepted.
TEST(VhostUserBackend, FeatureDependenciesAreEnforced) {
  struct Case {
    std::uint64_t without;
    const char* rule;
  } const cases[] = {
      {kFeatureGuestCsum, "GUEST_TSO4 requires GUEST_CSUM"},
      {kFeatureGuestCsum | kFeatureGuestTso4, "GUEST_TSO6 requires GUEST_CSUM"},
      {kFeatureGuestTso4 | kFeatureGuestTso6, "GUEST_ECN requires GUEST_TSO4 or GUEST_TSO6"},
      {kFeatureCsum, "HOST_TSO4 requires CSUM"},
      {kFeatureCsum | kFeatureHostTso4, "HOST_TSO6 requires CSUM"},
      {kFeatureHostTso4 | kFeatureHostTso6, "HOST_ECN requires HOST_TSO4 or HOST_TSO6"},
  };
  for (const Case& c : cases) {
    Handshake h;
    auto r = h.backend.handle(msg(Request::kSetFeatures, kOfferedFeatures & ~c.without));
    ASSERT_FALSE(r.has_value()) << c.rule;
    EXPECT_NE(r.error().find(c.rule), std::string::npos) << r.error();
  }
  Handshake h;  // a minimal set with its dependency
  h.ok(msg(Request::kSetFeatures, kFeatureVersion1 | kFeatureHostTso4 | kFeatureCsum));
}

// By default every legal split-ring size is accepted (QEMU's rx_queue_size=1024 among
// them); what the spec forbids is refused with the rule named.
TEST(VhostUserBackend, EveryLegalQueueSizeIsAcceptedByDefault) {
  Backend backend;
  for (std::uint32_t n : {1u, 256u, 1024u, 32768u}) {
    auto r = backend.handle(msg(Request::kSetVringNum, VringState{0, n}));
    EXPECT_TRUE(r.has_value()) << n << ": " << (r ? "" : r.error());
  }
  for (std::uint32_t n : {0u, 3u, 1000u, 65536u}) {
    auto r = backend.handle(msg(Request::kSetVringNum, VringState{0, n}));
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_NE(r.error().find("power of two in 1..32768"), std::string::npos) << r.error();
  }
  Backend capped{256};
  auto r = capped.handle(msg(Request::kSetVringNum, VringState{0, 1024}));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("configured vhost_user.queue_size 256"), std::string::npos) << r.error();
}

// Guest memory a front-end could shrink under the mapping would SIGBUS the switch: a
// memfd without F_SEAL_SHRINK is refused (QEMU's memory-backend-memfd seals by default);
// a plain file, which cannot say, is accepted with its size checked. And no front-end
// makes the device map more than its limit.
TEST(VhostUserBackend, GuestMemoryMustBeSealedAndWithinTheLimit) {
  {
    Handshake h;
    GuestDriver unsealed{8, true, 1 << 20, /*shared=*/true, GuestDriver::kBase, /*sealed=*/false};
    h.ok(msg(Request::kSetFeatures, kOfferedFeatures));
    auto r = h.backend.handle(msg(Request::kSetMemTable, h.table(unsealed.bytes()), one(::dup(unsealed.memfd()))));
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().find("F_SEAL_SHRINK"), std::string::npos) << r.error();
  }
  {
    Handshake h;  // a plain (unlinked) file: no seals to ask for
    char path[] = "/tmp/vswitch-guest-ram-XXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::unlink(path);
    ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
    h.ok(msg(Request::kSetFeatures, kOfferedFeatures));
    h.ok(msg(Request::kSetMemTable, h.table(1 << 20), one(fd)));
  }
  {
    Handshake h;
    Backend small{256, 1 << 19};  // half the guest's 1 MiB
    ASSERT_TRUE(small.handle(msg(Request::kSetFeatures, kOfferedFeatures)).has_value());
    auto r = small.handle(msg(Request::kSetMemTable, h.table(h.guest.bytes()), one(::dup(h.guest.memfd()))));
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().find("limit of 524288 bytes"), std::string::npos) << r.error();
  }
}

TEST(VhostUserBackend, ResetForgetsTheGuest) {
  Handshake h;
  h.negotiate();
  h.setup_vring(kRxQueue);
  h.ok(msg(Request::kSetVringEnable, VringState{kRxQueue, 1}));
  ASSERT_NE(h.backend.queue(kRxQueue), nullptr);
  h.backend.reset();
  EXPECT_EQ(h.backend.queue(kRxQueue), nullptr);
  EXPECT_EQ(h.backend.features(), 0u);
  EXPECT_LT(h.backend.kick_fd(kRxQueue), 0);
}

}  // namespace
}  // namespace vswitch::endpoints::vhost_user
