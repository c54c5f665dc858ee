// The vhost-user virtio-net device driven over its real unix socket the way QEMU's
// vhost-user-net drives it (GET_FEATURES, SET_FEATURES, SET_OWNER, SET_MEM_TABLE with the
// guest's RAM in memfds, the vrings, SET_VRING_ENABLE), with an in-process guest driver
// on the other side of the queues: frames both ways with their interrupts, the wait for
// RX buffers and its kick, software segmentation resumed by token, bad chains returned and
// counted, and every way the front-end can break the session (a protocol violation, a
// kick or call that is no eventfd), each closing only its connection, counted and said.
#include "endpoints/vhost_user/net_device.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "shm/sys/clock.hpp"
#include "tests/support/bytes.hpp"
#include "tests/support/guest_driver.hpp"
#include "vswitch/control/syscall_filter.hpp"

namespace vswitch::endpoints::vhost_user {
namespace {

using test::GuestDriver;
using virtio::Descriptor;
using test::Bytes;
using test::get16;
using test::get32;
using test::put16;
using test::put32;

constexpr std::uint16_t kQueueSize = 16;
constexpr std::size_t kMaxFrame = 65536;
constexpr std::uint64_t kRxBase = 0x100000;             // the guest's RX ring and buffers
constexpr std::uint64_t kTxBase = 0x400000;             // its TX ring and frames
constexpr std::uint64_t kQemuAddr = 0x7f1200000000;     // where "QEMU" has guest RAM mapped
constexpr std::uint64_t kQemuTxOffset = 0x10000000;     // ... and the second region
constexpr std::size_t kRamBytes = 1 << 20;
constexpr std::uint64_t kNoGuestTso = ~(kFeatureGuestTso4 | kFeatureGuestTso6 | kFeatureGuestEcn);

// A pipe: a descriptor epoll can watch but that is no eventfd.
std::pair<sys::Fd, sys::Fd> make_pipe() {
  int p[2] = {-1, -1};
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return {};
  return {sys::Fd(p[0]), sys::Fd(p[1])};
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

// The front-end's end of the socket: each message sent whole, with its descriptors.
class FrontEnd {
 public:
  explicit FrontEnd(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    connected_ = ::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  }
  [[nodiscard]] bool connected() const { return connected_; }
  // One GET_FEATURES without waiting: false when the socket has no room for it.
  bool try_get_features() {
    const Header h{static_cast<std::uint32_t>(Request::kGetFeatures), kVersion, 0};
    return ::send(fd_.get(), &h, sizeof h, MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof h);
  }
  // How many u64 replies (header + 8 bytes each) arrived, read without waiting.
  std::size_t take_replies() {
    std::size_t bytes = 0;
    std::array<char, 4096> buf;
    for (ssize_t n; (n = ::recv(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT)) > 0;) bytes += static_cast<std::size_t>(n);
    partial_ += bytes;
    const std::size_t replies = partial_ / (kHeaderBytes + 8);
    partial_ %= kHeaderBytes + 8;
    return replies;
  }
  // Whether the device closed its end (waits at most 5 s for it).
  bool closed_by_peer() {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return false;
    char c;
    return ::recv(fd_.get(), &c, 1, MSG_DONTWAIT) == 0;
  }

  void send(Request r, std::span<const std::byte> payload, const std::vector<int>& fds = {},
            bool need_reply = false) {
    Header h{static_cast<std::uint32_t>(r), kVersion | (need_reply ? kFlagNeedReply : 0u),
             static_cast<std::uint32_t>(payload.size())};
    Bytes bytes(sizeof h + payload.size());
    std::memcpy(bytes.data(), &h, sizeof h);
    if (!payload.empty()) std::memcpy(bytes.data() + sizeof h, payload.data(), payload.size());
    iovec iov{bytes.data(), bytes.size()};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
    if (!fds.empty()) {
      m.msg_control = control;
      m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(::sendmsg(fd_.get(), &m, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  template <typename T>
  void send_value(Request r, const T& value, const std::vector<int>& fds = {}) {
    send(r, std::as_bytes(std::span<const T>(&value, 1)), fds);
  }
  void send_empty(Request r) { send(r, {}); }

  // A u64 reply that the device has already sent (waits at most 5 s: a device that never
  // answers fails the test instead of hanging it).
  std::uint64_t reply_u64() {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) {
      ADD_FAILURE() << "no reply";
      return 0;
    }
    unsigned char buf[kHeaderBytes + 8];
    std::size_t got = 0;
    while (got < sizeof buf) {
      const ssize_t n = ::recv(fd_.get(), buf + got, sizeof buf - got, 0);
      if (n <= 0) {
        ADD_FAILURE() << "short reply";
        return 0;
      }
      got += static_cast<std::size_t>(n);
    }
    Header h;
    std::memcpy(&h, buf, sizeof h);
    EXPECT_NE(h.flags & kFlagReply, 0u);
    EXPECT_EQ(h.size, 8u);
    std::uint64_t v;
    std::memcpy(&v, buf + kHeaderBytes, 8);
    return v;
  }

 private:
  sys::Fd fd_;
  bool connected_ = false;
  std::size_t partial_ = 0;  // bytes of a reply take_replies() has seen part of
};

// The guest: its RAM in two memfds (or, with `tmpfs_files`, two unsealable files in
// /dev/shm; one region per queue), the drivers of its two queues and its ends of the kick
// and call eventfds.
struct Guest {
  explicit Guest(bool tmpfs_files = false)
      : rx{kQueueSize, false, kRamBytes, /*shared=*/true, kRxBase, /*sealed=*/true, tmpfs_files},
        tx{kQueueSize, false, kRamBytes, /*shared=*/true, kTxBase, /*sealed=*/true, tmpfs_files} {}
  GuestDriver rx;
  GuestDriver tx;
  std::array<sys::Fd, 2> kick{sys::Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
                              sys::Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))};
  std::array<sys::Fd, 2> call{sys::Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
                              sys::Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))};
  std::array<std::uint16_t, 2> next_desc{};
  std::vector<std::uint64_t> rx_buffers;  // gpa of each RX descriptor, by index

  GuestDriver& ring(std::uint32_t q) { return q == kRxQueue ? rx : tx; }
  static std::uint64_t qemu(std::uint64_t gpa) {
    return gpa >= kTxBase ? kQemuAddr + kQemuTxOffset + (gpa - kTxBase) : kQemuAddr + (gpa - kRxBase);
  }

  // One TX chain: the virtio-net header and the frame in one device-readable buffer (or,
  // with `writable`, a device-writable one: a bad chain).
  void transmit(const virtio::NetHeader& h, const Bytes& frame, bool writable = false) {
    Bytes packet(virtio::kNetHeaderBytes + frame.size());
    virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(packet.data(), virtio::kNetHeaderBytes));
    std::memcpy(packet.data() + virtio::kNetHeaderBytes, frame.data(), frame.size());
    const auto gpa = tx.alloc(packet.size());
    std::memcpy(tx.host(gpa), packet.data(), packet.size());
    const std::uint16_t d = next_desc[kTxQueue]++;
    tx.set_desc(d, Descriptor{gpa, static_cast<std::uint32_t>(packet.size()),
                              writable ? virtio::kDescFlagWrite : std::uint16_t{0}, 0});
    tx.make_available(d);
  }
  // `n` RX buffers of `bytes` each.
  void post_rx(std::size_t n, std::uint32_t bytes = 2048) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto gpa = rx.alloc(bytes);
      const std::uint16_t d = next_desc[kRxQueue]++;
      rx.set_desc(d, Descriptor{gpa, bytes, virtio::kDescFlagWrite, 0});
      if (rx_buffers.size() <= d) rx_buffers.resize(d + 1u);
      rx_buffers[d] = gpa;
      rx.make_available(d);
    }
  }
  // What the device wrote into the RX buffer of used element `i`: header and frame.
  Bytes received(std::uint16_t i) {
    const auto e = rx.used(i);
    const std::byte* p = rx.host(rx_buffers.at(e.id));
    return Bytes(p, p + e.len);
  }
  // Whether the device interrupted on queue q since the last look.
  bool interrupted(std::uint32_t q) {
    std::uint64_t v = 0;
    return ::read(call[q].get(), &v, sizeof v) == sizeof v && v != 0;
  }
  void kick_queue(std::uint32_t q) {
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(kick[q].get(), &one, sizeof one), 8);
  }
};

// The device on a socket in a fresh directory, its log kept, and the caller's loop pass.
struct Session {
  std::string dir;
  std::string path;
  std::unique_ptr<NetDevice> device;
  std::vector<std::string> log;
  Bytes buf = Bytes(kMaxFrame + 64);

  explicit Session(const NetDeviceCounters& initial = {}, const SocketAccess& access = {},
                   std::uint32_t max_mtu = kMaxGuestMtu) {
    char tmpl[] = "/tmp/vswitch-net-device-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (d == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = d;
    path = dir + "/vm.sock";
    auto made = NetDevice::create(path, 256, kMaxFrame, initial, kDefaultMaxGuestMemory, access, max_mtu);
    if (!made) throw std::runtime_error(made.error());
    device = std::move(made.value());
    device->set_log([this](const std::string& m) { log.push_back(m); });
  }
  ~Session() {
    device.reset();
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // One pass of the device's caller: control and kicks are looked at on the first
  // receive, every frame the guest sent is taken, used elements published, interrupts sent.
  // A test that calls deliver() ends that pass with pass() too, as the caller's loop ends
  // every pass with flush(): control is looked at once per pass.
  std::vector<Bytes> pass() {
    std::vector<Bytes> frames;
    while (auto n = device->receive(buf)) frames.emplace_back(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
    device->flush();
    return frames;
  }
  [[nodiscard]] bool said(const std::string& what) const {
    for (const auto& m : log)
      if (m.find(what) != std::string::npos) return true;
    return false;
  }

  // QEMU's vhost-user-net start-up, in its order; `kick_fds`/`call_fds` replace the
  // guest's eventfds where given (to hand the device a descriptor it cannot use).
  void attach(FrontEnd& fe, Guest& g, std::uint64_t features, std::array<int, 2> kick_fds = {-1, -1},
              std::array<int, 2> call_fds = {-1, -1}) {
    ASSERT_TRUE(fe.connected());
    pass();  // accepts
    fe.send(Request::kGetFeatures, {}, {}, /*need_reply=*/false);
    pass();
    EXPECT_EQ(fe.reply_u64(), kOfferedFeatures);
    fe.send_value(Request::kSetFeatures, features);
    fe.send_empty(Request::kSetOwner);
    struct {
      std::uint32_t regions = 2;
      std::uint32_t padding = 0;
      MemRegion region[2];
    } table{2, 0, {{kRxBase, kRamBytes, kQemuAddr, 0}, {kTxBase, kRamBytes, kQemuAddr + kQemuTxOffset, 0}}};
    fe.send_value(Request::kSetMemTable, table, {g.rx.memfd(), g.tx.memfd()});
    for (std::uint32_t q : {kRxQueue, kTxQueue}) {
      const auto& l = g.ring(q).layout();
      fe.send_value(Request::kSetVringNum, VringState{q, kQueueSize});
      fe.send_value(Request::kSetVringBase, VringState{q, 0});
      fe.send_value(Request::kSetVringAddr,
                    VringAddr{q, 0, Guest::qemu(l.desc_gpa), Guest::qemu(l.used_gpa), Guest::qemu(l.avail_gpa), 0});
      fe.send_value(Request::kSetVringKick, std::uint64_t{q}, {kick_fds[q] >= 0 ? kick_fds[q] : g.kick[q].get()});
      fe.send_value(Request::kSetVringCall, std::uint64_t{q}, {call_fds[q] >= 0 ? call_fds[q] : g.call[q].get()});
      fe.send_value(Request::kSetVringEnable, VringState{q, 1});
    }
    pass();
  }
};

Bytes plain_frame(std::size_t bytes, std::uint8_t fill) {
  Bytes f(bytes, std::byte{fill});
  for (std::size_t i = 0; i < 6; ++i) f[i] = std::byte{0x52};  // to 52:52:52:52:52:52
  for (std::size_t i = 6; i < 12; ++i) f[i] = std::byte{0x02};
  f[12] = std::byte{0x08};
  f[13] = std::byte{0x00};
  return f;
}

// A TCP/IPv4 frame as a TSO sender hands it (no TCP options), `payload` bytes, first
// sequence number `seq`, and its GSO header for segments of `mss`.
constexpr std::size_t kL3 = 14, kL4 = 34, kPayloadAt = 54;
std::pair<virtio::NetHeader, Bytes> tso_frame(std::size_t payload, std::uint32_t seq, std::uint16_t mss) {
  Bytes b = plain_frame(kPayloadAt + payload, 0);
  b[kL3] = std::byte{0x45};
  put16(b, kL3 + 2, static_cast<std::uint16_t>(20 + 20 + payload));
  b[kL3 + 8] = std::byte{64};
  b[kL3 + 9] = std::byte{6};
  put32(b, kL3 + 12, 0x0a000001);
  put32(b, kL3 + 16, 0x0a000002);
  put16(b, kL4, 40000);
  put16(b, kL4 + 2, 5201);
  put32(b, kL4 + 4, seq);
  b[kL4 + 12] = std::byte{0x50};  // data offset 5 words
  b[kL4 + 13] = std::byte{0x18};  // PSH ACK
  put16(b, kL4 + 14, 512);
  for (std::size_t i = 0; i < payload; ++i) b[kPayloadAt + i] = static_cast<std::byte>(i * 7 + 3);
  // The checksum field holds the pseudo header's sum, as a sender that leaves the rest to
  // the device writes it (RFC 1071 sums, end-around carry).
  std::uint32_t pseudo = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + static_cast<std::uint32_t>(20 + payload);
  while (pseudo >> 16) pseudo = (pseudo & 0xffff) + (pseudo >> 16);
  put16(b, kL4 + 16, static_cast<std::uint16_t>(pseudo));
  virtio::NetHeader h;
  h.flags = virtio::kNetHdrFlagNeedsCsum;
  h.gso_type = virtio::kGsoTcpV4;
  h.gso_size = mss;
  h.hdr_len = static_cast<std::uint16_t>(kPayloadAt);
  h.csum_start = static_cast<std::uint16_t>(kL4);
  h.csum_offset = 16;
  return {h, b};
}

// What the switch hands the device: a header parse() accepted for this frame.
virtio::CheckedNetHeader checked(const virtio::NetHeader& h, const Bytes& frame) {
  Bytes b(virtio::kNetHeaderBytes + frame.size());
  virtio::write(h, std::span<std::byte, virtio::kNetHeaderBytes>(b.data(), virtio::kNetHeaderBytes));
  std::memcpy(b.data() + virtio::kNetHeaderBytes, frame.data(), frame.size());
  auto r = virtio::parse(b);
  if (!r) throw std::runtime_error("test header rejected: " + std::string(virtio::to_string(r.error())));
  return r.value();
}

TEST(VhostUserNetDevice, CarriesFramesBothWaysWithInterrupts) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  ASSERT_TRUE(s.device->connected());
  EXPECT_EQ(s.device->features(), kOfferedFeatures);
  EXPECT_TRUE(s.said("connected"));

  // Guest -> device: the header and frame, byte for byte; the chain is used and the
  // guest interrupted.
  const Bytes out = plain_frame(60, 0x11);
  g.transmit(virtio::NetHeader{}, out);
  const auto got = s.pass();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].size(), virtio::kNetHeaderBytes + out.size());
  EXPECT_EQ(std::memcmp(got[0].data() + virtio::kNetHeaderBytes, out.data(), out.size()), 0);
  EXPECT_EQ(g.tx.used_idx(), 1);
  EXPECT_TRUE(g.interrupted(kTxQueue));

  // Device -> guest: one buffer (num_buffers = 1), the frame after the header.
  g.post_rx(2);
  const Bytes in = plain_frame(100, 0x22);
  ResumeToken token;
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kDelivered);
  EXPECT_EQ(token.pack(), 0u);
  EXPECT_EQ(g.rx.used_idx(), 0) << "published only by flush()";
  s.pass();
  ASSERT_EQ(g.rx.used_idx(), 1);
  const Bytes r = g.received(0);
  ASSERT_EQ(r.size(), virtio::kNetHeaderBytes + in.size());
  EXPECT_EQ(std::to_integer<int>(r[10]), 1) << "num_buffers";
  EXPECT_EQ(std::memcmp(r.data() + virtio::kNetHeaderBytes, in.data(), in.size()), 0);
  EXPECT_TRUE(g.interrupted(kRxQueue));

  const NetDeviceCounters c = s.device->counters();
  EXPECT_EQ(c.totals.connections, 1u);
  EXPECT_EQ(c.totals.interrupts, 2u);
  EXPECT_EQ(c.totals.protocol_errors, 0u);
  EXPECT_EQ(c.totals.bad_chains, 0u);
}

// VIRTIO_NET_F_MTU: QEMU (host_mtu=) tells the device its guest's MTU with NET_SET_MTU and
// waits for the answer. Up to the port's MTU it is taken, and from then on no frame that
// is not GSO and is longer than that MTU + 18 reaches the guest (virtio 1.x 5.1.6.3.2);
// above the port's it is refused with a non-zero status, the session kept.
TEST(VhostUserNetDevice, TheGuestsMtuIsTakenUpToThePortsAndHeldToOnDelivery) {
  Session s({}, {}, 9000);
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  fe.send_value(Request::kSetProtocolFeatures, kProtocolReplyAck | kProtocolNetMtu);
  const std::uint64_t too_big = 9001, fine = 1500;
  fe.send(Request::kNetSetMtu, std::as_bytes(std::span<const std::uint64_t>(&too_big, 1)), {}, /*need_reply=*/true);
  s.pass();
  EXPECT_NE(fe.reply_u64(), 0u) << "an MTU above the port's is refused";
  EXPECT_TRUE(s.said("NET_SET_MTU 9001 refused"));
  ASSERT_TRUE(s.device->connected()) << "a refusal is an answer, not a broken session";
  fe.send(Request::kNetSetMtu, std::as_bytes(std::span<const std::uint64_t>(&fine, 1)), {}, /*need_reply=*/true);
  s.pass();
  EXPECT_EQ(fe.reply_u64(), 0u);
  EXPECT_TRUE(s.said("MTU 1500"));

  g.post_rx(8);
  ResumeToken token;
  const Bytes full = plain_frame(1500 + 18, 0x44);  // a tagged frame of a full MTU
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, full), full, token), NetDevice::Delivery::kDelivered);
  const Bytes over = plain_frame(1500 + 19, 0x45);
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, over), over, token), NetDevice::Delivery::kMtuExceeded);
  // A GSO frame is cut by gso_size, not held to the MTU.
  const auto [h, tso] = tso_frame(4000, 1, 1448);
  EXPECT_EQ(s.device->deliver(checked(h, tso), tso, token), NetDevice::Delivery::kDelivered);
  s.pass();
  EXPECT_EQ(std::to_integer<int>(g.received(0)[10]), 1) << "the full-MTU frame in one buffer";
  EXPECT_EQ(g.received(0).size(), virtio::kNetHeaderBytes + full.size());
  EXPECT_EQ(std::to_integer<int>(g.received(1)[1]), virtio::kGsoTcpV4) << "the GSO frame came next, not the one above the MTU";
}

// For a guest without GUEST_TSO the device cuts GSO frames itself: each segment it makes
// is a plain frame for that guest, held to the MTU the guest took (a gso_size beyond it
// is refused whole, before any segment goes out).
TEST(VhostUserNetDevice, SegmentsCutForTheGuestAreHeldToItsMtu) {
  Session s({}, {}, 9000);
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures & kNoGuestTso);
  fe.send_value(Request::kSetProtocolFeatures, kProtocolReplyAck | kProtocolNetMtu);
  const std::uint64_t mtu = 1500;
  fe.send(Request::kNetSetMtu, std::as_bytes(std::span<const std::uint64_t>(&mtu, 1)), {}, /*need_reply=*/true);
  s.pass();
  ASSERT_EQ(fe.reply_u64(), 0u);
  g.post_rx(16);
  ResumeToken token;
  const auto [big_h, big] = tso_frame(4000, 1, 3000);  // segments of 3054 bytes for a 1500 guest
  EXPECT_EQ(s.device->deliver(checked(big_h, big), big, token), NetDevice::Delivery::kMtuExceeded);
  const auto [h, tso] = tso_frame(4000, 1, 1448);
  EXPECT_EQ(s.device->deliver(checked(h, tso), tso, token), NetDevice::Delivery::kDelivered);
  s.pass();
  EXPECT_EQ(s.device->counters().totals.segments_made, 3u) << "only the frame within the MTU was cut and delivered";
  EXPECT_EQ(g.received(0).size(), virtio::kNetHeaderBytes + 54 + 1448);
}

TEST(VhostUserNetDevice, AFrameWaitsForBuffersAndArmAsksForTheKick) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  const Bytes in = plain_frame(200, 0x33);
  ResumeToken token;
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kWaitForBuffers);
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kWaitForBuffers);
  EXPECT_EQ(s.device->counters().totals.rx_no_buffers, 1u) << "counted once per wait";
  s.pass();
  EXPECT_TRUE(s.device->arm()) << "nothing posted: the caller may sleep";
  EXPECT_FALSE(readable(s.device->fd()));

  // The guest posts a buffer and kicks: the device's descriptor wakes its caller.
  g.post_rx(1);
  g.kick_queue(kRxQueue);
  EXPECT_TRUE(readable(s.device->fd()));
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kDelivered);
  s.pass();
  EXPECT_EQ(g.rx.used_idx(), 1);

  // A buffer posted between the caller's last look and arm() keeps it awake.
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kWaitForBuffers);
  s.pass();
  g.post_rx(1);
  EXPECT_FALSE(s.device->arm());
  EXPECT_EQ(s.device->counters().totals.rx_no_buffers, 2u);
}

// A caller that sleeps on a timer (wake-up coalescing) asks the guest not to kick for TX:
// a guest without EVENT_IDX (this one) sees VRING_USED_F_NO_NOTIFY until the next arm(),
// which clears it again (virtio 1.2, 2.7.10: the driver "SHOULD NOT send a notification"
// while the flag is set).
TEST(VhostUserNetDevice, QuietAsksTheGuestNotToKickUntilTheNextArm) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures & ~kFeatureEventIdx);
  s.pass();
  ASSERT_TRUE(s.device->arm());
  EXPECT_EQ(g.tx.used_flags() & virtio::kUsedFlagNoNotify, 0) << "armed: kicks wanted";
  s.device->quiet();
  EXPECT_EQ(g.tx.used_flags() & virtio::kUsedFlagNoNotify, virtio::kUsedFlagNoNotify);
  ASSERT_TRUE(s.device->arm());
  EXPECT_EQ(g.tx.used_flags() & virtio::kUsedFlagNoNotify, 0);
}

// Two GSO frames wait at once for a guest without GUEST_TSO: each resumes with its own
// token after the segments the guest already has. Every segment arrives exactly once,
// in order (a device that remembered one frame's progress would send one twice).
TEST(VhostUserNetDevice, SegmentationResumesByTokenWithoutRepeatingASegment) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures & kNoGuestTso);
  const auto [ha, a] = tso_frame(300, 1000, 100);  // 3 segments
  const auto [hb, b] = tso_frame(200, 5000, 100);  // 2 segments
  g.post_rx(1);
  ResumeToken ta, tb;
  EXPECT_EQ(s.device->deliver(checked(ha, a), a, ta), NetDevice::Delivery::kWaitForBuffers);
  EXPECT_NE(ta.epoch, 0u);
  EXPECT_EQ(ta.next_segment, 1u);
  EXPECT_EQ(s.device->deliver(checked(hb, b), b, tb), NetDevice::Delivery::kWaitForBuffers);
  EXPECT_EQ(tb.next_segment, 0u);
  s.pass();
  g.post_rx(8);
  EXPECT_EQ(s.device->deliver(checked(ha, a), a, ta), NetDevice::Delivery::kDelivered);
  EXPECT_EQ(ta.pack(), 0u);
  EXPECT_EQ(s.device->deliver(checked(hb, b), b, tb), NetDevice::Delivery::kDelivered);
  s.pass();
  ASSERT_EQ(g.rx.used_idx(), 5);
  const std::uint32_t want[] = {1000, 1100, 1200, 5000, 5100};
  for (std::uint16_t i = 0; i < 5; ++i) {
    const Bytes r = g.received(i);
    ASSERT_EQ(r.size(), virtio::kNetHeaderBytes + kPayloadAt + 100) << "segment " << i;
    EXPECT_EQ(get32(Bytes(r.begin() + virtio::kNetHeaderBytes, r.end()), kL4 + 4), want[i]) << "segment " << i;
  }
  EXPECT_EQ(s.device->counters().totals.segments_made, 5u);
}

// The caller's checked copy of a frame's addresses (`head`) is what the guest gets, not
// the frame's own first bytes (which lie in memory another party writes): in a plain
// frame, and in every segment cut from a TSO frame for a guest without TSO.
TEST(VhostUserNetDevice, TheCallersAddressesReplaceTheFramesOwn) {
  Bytes head(12);
  for (std::size_t i = 0; i < head.size(); ++i) head[i] = static_cast<std::byte>(0xa0 + i);
  {
    Session s;
    Guest g;
    FrontEnd fe(s.path);
    s.attach(fe, g, kOfferedFeatures);
    g.post_rx(1);
    const Bytes in = plain_frame(200, 0x33);
    ResumeToken token;
    ASSERT_EQ(s.device->deliver(checked(virtio::NetHeader{}, in), in, token, head), NetDevice::Delivery::kDelivered);
    s.pass();
    const Bytes r = g.received(0);
    ASSERT_EQ(r.size(), virtio::kNetHeaderBytes + in.size());
    EXPECT_TRUE(std::equal(head.begin(), head.end(), r.begin() + virtio::kNetHeaderBytes));
    EXPECT_TRUE(std::equal(in.begin() + 12, in.end(), r.begin() + virtio::kNetHeaderBytes + 12));
  }
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures & kNoGuestTso);
  const auto [h, f] = tso_frame(300, 1000, 100);  // 3 segments
  g.post_rx(3);
  ResumeToken token;
  ASSERT_EQ(s.device->deliver(checked(h, f), f, token, head), NetDevice::Delivery::kDelivered);
  s.pass();
  ASSERT_EQ(g.rx.used_idx(), 3);
  for (std::uint16_t i = 0; i < 3; ++i) {
    const Bytes r = g.received(i);
    EXPECT_TRUE(std::equal(head.begin(), head.end(), r.begin() + virtio::kNetHeaderBytes)) << "segment " << i;
  }
}

// A token from an earlier connection starts the frame over: the device cannot know what
// the guest that came back kept, and a repeated segment is better than a missing one.
TEST(VhostUserNetDevice, ATokenOfAnEarlierConnectionStartsOver) {
  Session s;
  ResumeToken t;
  const auto [h, f] = tso_frame(300, 1000, 100);
  {
    Guest g;
    FrontEnd fe(s.path);
    s.attach(fe, g, kOfferedFeatures & kNoGuestTso);
    g.post_rx(1);
    EXPECT_EQ(s.device->deliver(checked(h, f), f, t), NetDevice::Delivery::kWaitForBuffers);
    EXPECT_EQ(t.next_segment, 1u);
    s.pass();
  }  // the front-end goes away
  const ResumeToken earlier = t;
  s.pass();
  EXPECT_FALSE(s.device->connected());
  EXPECT_EQ(s.device->deliver(checked(h, f), f, t), NetDevice::Delivery::kNoGuest) << "nothing to wait for";
  EXPECT_EQ(t.pack(), 0u);
  s.pass();  // the caller's pass ends
  t = earlier;  // a caller that kept the token anyway
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures & kNoGuestTso);
  g.post_rx(4);
  EXPECT_EQ(s.device->deliver(checked(h, f), f, t), NetDevice::Delivery::kDelivered);
  s.pass();
  EXPECT_EQ(g.rx.used_idx(), 3) << "all three segments for the new guest";
}

// A guest without GUEST_CSUM gets the checksum filled in, counted once per frame however
// often the frame had to wait.
TEST(VhostUserNetDevice, ChecksumsAreCompletedForAGuestWithoutGuestCsum) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures & kNoGuestTso & ~kFeatureGuestCsum);
  auto [h, f] = tso_frame(100, 1000, 0);
  h.gso_type = virtio::kGsoNone;  // one frame, checksum left to the device
  h.gso_size = 0;
  ResumeToken t;
  EXPECT_EQ(s.device->deliver(checked(h, f), f, t), NetDevice::Delivery::kWaitForBuffers);
  EXPECT_EQ(s.device->deliver(checked(h, f), f, t), NetDevice::Delivery::kWaitForBuffers);
  g.post_rx(1);
  EXPECT_EQ(s.device->deliver(checked(h, f), f, t), NetDevice::Delivery::kDelivered);
  s.pass();
  ASSERT_EQ(g.rx.used_idx(), 1);
  const Bytes r = g.received(0);
  ASSERT_EQ(r.size(), virtio::kNetHeaderBytes + f.size());
  EXPECT_EQ(std::to_integer<int>(r[0]), 0) << "no NEEDS_CSUM left for the guest";
  // The TCP checksum over the pseudo header and segment now sums to 0xffff.
  const Bytes got(r.begin() + virtio::kNetHeaderBytes, r.end());
  std::uint32_t sum = 0;
  for (std::size_t i = kL3 + 12; i < kL3 + 20; i += 2) sum += get16(got, i);
  sum += 6 + static_cast<std::uint32_t>(got.size() - kL4);
  for (std::size_t i = kL4; i < got.size(); i += 2) sum += get16(got, i);  // even length here
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffu);
  EXPECT_EQ(s.device->counters().totals.csum_completed, 1u);
}

TEST(VhostUserNetDevice, ABadTxChainGoesBackEmptyAndIsCounted) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  g.transmit(virtio::NetHeader{}, plain_frame(60, 0x44), /*writable=*/true);
  g.transmit(virtio::NetHeader{}, plain_frame(60, 0x55));
  const auto got = s.pass();
  ASSERT_EQ(got.size(), 1u) << "the good frame after the bad chain";
  ASSERT_EQ(g.tx.used_idx(), 2);
  EXPECT_EQ(g.tx.used(0).len, 0u);
  const NetDeviceCounters c = s.device->counters();
  EXPECT_EQ(c.totals.bad_chains, 1u);
  EXPECT_EQ(c.tx_errors[virtio::TxError::kWritableBuffer], 1u);
  EXPECT_TRUE(s.device->connected()) << "a bad chain is not a protocol violation";
}

// virtio 1.x 5.1.6.4.1: without MRG_RXBUF a frame takes exactly one chain (num_buffers
// 1): one its buffers cannot hold is dropped and counted, never spread over several.
TEST(VhostUserNetDevice, WithoutMrgRxbufAFrameNeverSpansChains) {
  Session s;
  const Bytes big = plain_frame(200, 0x21);
  ResumeToken t;
  {
    Guest g;
    FrontEnd fe(s.path);
    s.attach(fe, g, kOfferedFeatures & ~kFeatureMrgRxbuf);
    g.post_rx(4, 100);
    EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, big), big, t), NetDevice::Delivery::kTooLarge);
    const Bytes small = plain_frame(60, 0x22);
    EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, small), small, t), NetDevice::Delivery::kDelivered);
    s.pass();
    ASSERT_EQ(g.rx.used_idx(), 1) << "only the frame that fits one chain";
    const Bytes r = g.received(0);
    ASSERT_EQ(r.size(), virtio::kNetHeaderBytes + small.size());
    EXPECT_EQ(get16(r, 10), 0x0100) << "num_buffers 1 (little-endian)";
    EXPECT_EQ(s.device->counters().rx_drops[virtio::RxDrop::kBufferTooSmall], 1u);
  }
  s.pass();  // the front-end went away
  // The next front-end negotiates MRG_RXBUF: the same frame now spans chains.
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  g.post_rx(4, 100);
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, big), big, t), NetDevice::Delivery::kDelivered);
  s.pass();
  EXPECT_EQ(g.rx.used_idx(), 3);
  EXPECT_EQ(get16(g.received(0), 10), 0x0300) << "num_buffers 3";
}

// virtio 1.x 5.1.6.2.1: a guest's TX header may not mark its frame verified (DATA_VALID)
// for the other guests and the host, nor ask for an offload it did not negotiate.
TEST(VhostUserNetDevice, TxHeadersAreHeldToTheNegotiatedFeatures) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures & ~(kFeatureHostTso4 | kFeatureHostTso6 | kFeatureHostEcn));
  virtio::NetHeader marked;
  marked.flags = virtio::kNetHdrFlagDataValid;
  g.transmit(marked, plain_frame(60, 0x12));
  const auto [tso, frame] = tso_frame(300, 1000, 100);
  g.transmit(tso, frame);  // TSO without HOST_TSO4
  const auto got = s.pass();
  ASSERT_EQ(got.size(), 1u) << "the TSO frame is refused";
  EXPECT_EQ(std::to_integer<int>(got[0][0]), 0) << "DATA_VALID cleared";
  ASSERT_EQ(g.tx.used_idx(), 2);
  EXPECT_EQ(g.tx.used(1).len, 0u);
  const NetDeviceCounters c = s.device->counters();
  EXPECT_EQ(c.totals.bad_chains, 1u);
  EXPECT_EQ(c.tx_errors[virtio::TxError::kOffloadNotNegotiated], 1u);
  EXPECT_TRUE(s.device->connected()) << "a refused header harms only its guest's frame";
}

TEST(VhostUserNetDevice, AProtocolViolationClosesTheConnectionOnly) {
  Session s;
  {
    Guest g;
    FrontEnd fe(s.path);
    s.attach(fe, g, kOfferedFeatures);
    fe.send_value(Request::kSetVringNum, VringState{kRxQueue, 1024});  // above the configured queue_size (256)
    s.pass();
    EXPECT_FALSE(s.device->connected());
    EXPECT_EQ(s.device->counters().totals.protocol_errors, 1u);
    EXPECT_TRUE(s.said("disconnected: ")) << "the reason is said";
  }
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  EXPECT_TRUE(s.device->connected()) << "the next front-end is served";
  EXPECT_EQ(s.device->counters().totals.connections, 2u);
}

// vhost-user spec: the kick, call and err descriptors are eventfds. Anything else is
// refused where it arrives, at SET_VRING_KICK / SET_VRING_CALL: a regular file (which
// epoll refuses), a pipe (which hangs up and would be reported readable forever, or
// blocks a write), each closing only its connection.
struct NotAnEventFd {
  const char* what;
  bool kick;  // else the call
};

void expect_refused(const NotAnEventFd& c, int fd) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  if (c.kick) s.attach(fe, g, kOfferedFeatures, {-1, fd});
  else s.attach(fe, g, kOfferedFeatures, {-1, -1}, {-1, fd});
  EXPECT_FALSE(s.device->connected()) << c.what;
  EXPECT_EQ(s.device->counters().totals.protocol_errors, 1u) << c.what;
  EXPECT_TRUE(s.said(c.kick ? "SET_VRING_KICK" : "SET_VRING_CALL")) << (s.log.empty() ? "" : s.log.back());
  EXPECT_TRUE(s.said("not an eventfd")) << (s.log.empty() ? "" : s.log.back());
}

TEST(VhostUserNetDevice, AKickOrCallThatIsNoEventFdIsRefused) {
  const sys::Fd file(::memfd_create("not-an-eventfd", MFD_CLOEXEC));
  ASSERT_TRUE(file.valid());
  const auto [read_end, write_end] = make_pipe();
  ASSERT_TRUE(read_end.valid());
  expect_refused({"a memfd kick", true}, file.get());
  expect_refused({"a pipe kick", true}, read_end.get());
  expect_refused({"a pipe call", false}, read_end.get());
  expect_refused({"a memfd call", false}, file.get());
}

// A blocking eventfd from the front-end is made non-blocking, so that no read of a kick
// or write of a call can stop the device's loop (an eventfd's file is shared: the
// front-end's descriptor shows the flag too).
TEST(VhostUserNetDevice, KickAndCallEventFdsAreMadeNonBlocking) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  const sys::Fd kick(::eventfd(0, EFD_CLOEXEC));
  const sys::Fd call(::eventfd(0, EFD_CLOEXEC));
  ASSERT_EQ(::fcntl(kick.get(), F_GETFL) & O_NONBLOCK, 0);
  s.attach(fe, g, kOfferedFeatures, {-1, kick.get()}, {-1, call.get()});
  ASSERT_TRUE(s.device->connected());
  EXPECT_NE(::fcntl(kick.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(call.get(), F_GETFL) & O_NONBLOCK, 0);
  g.transmit(virtio::NetHeader{}, plain_frame(60, 0x66));
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(kick.get(), &one, sizeof one), 8);
  EXPECT_EQ(s.pass().size(), 1u);
  EXPECT_TRUE(s.device->connected());
}

// One front-end at a time: a second connection is closed at once, counted and said with
// its peer's credentials, and the first keeps its guest. Once the first has gone, the
// next is served, even when its connect is seen before the first one's hang-up.
TEST(VhostUserNetDevice, ASecondFrontEndIsRefusedNotSwappedIn) {
  Session s;
  auto g = std::make_unique<Guest>();
  auto first = std::make_unique<FrontEnd>(s.path);
  s.attach(*first, *g, kOfferedFeatures);
  ASSERT_TRUE(s.device->connected());
  FrontEnd second(s.path);
  ASSERT_TRUE(second.connected());
  s.pass();
  EXPECT_TRUE(second.closed_by_peer()) << "refused at once";
  EXPECT_EQ(s.device->counters().totals.connections_refused, 1u);
  EXPECT_EQ(s.device->counters().totals.connections, 1u);
  EXPECT_TRUE(s.said("refused")) << (s.log.empty() ? "" : s.log.back());
  EXPECT_TRUE(s.said("uid " + std::to_string(::getuid()))) << "the peer's credentials are logged";
  g->transmit(virtio::NetHeader{}, plain_frame(60, 0x31));
  EXPECT_EQ(s.pass().size(), 1u) << "the first front-end's guest still runs";

  first.reset();  // the first front-end goes away; the next connects before a pass sees it
  g.reset();
  Guest g2;
  FrontEnd third(s.path);
  s.attach(third, g2, kOfferedFeatures);
  EXPECT_TRUE(s.device->connected());
  EXPECT_EQ(s.device->counters().totals.connections, 2u);
  EXPECT_EQ(s.device->counters().totals.connections_refused, 1u);
}

// The administrative link (vswitchctl link): down disconnects the front-end (QEMU then
// shows its guest the link down) and closes every front-end that connects while it
// stays down, counted, said once; up takes the next one as usual.
TEST(VhostUserNetDevice, ALinkDownDisconnectsAndRefusesUntilUp) {
  Session s;
  auto g = std::make_unique<Guest>();
  auto first = std::make_unique<FrontEnd>(s.path);
  s.attach(*first, *g, kOfferedFeatures);
  ASSERT_TRUE(s.device->connected());
  s.device->set_link(false);
  EXPECT_FALSE(s.device->connected());
  EXPECT_TRUE(first->closed_by_peer()) << "the front-end was not disconnected";
  for (int i = 0; i < 2; ++i) {
    FrontEnd retry(s.path);
    ASSERT_TRUE(retry.connected());
    s.pass();
    EXPECT_TRUE(retry.closed_by_peer()) << "a front-end was taken while the link is down";
    EXPECT_FALSE(s.device->connected());
  }
  EXPECT_EQ(s.device->counters().totals.connections_refused, 2u);
  EXPECT_EQ(std::count_if(s.log.begin(), s.log.end(),
                          [](const std::string& m) { return m.find("the link is down") != std::string::npos; }),
            1) << "said once per down";
  s.device->set_link(true);
  first.reset();
  g.reset();
  Guest g2;
  FrontEnd back(s.path);
  s.attach(back, g2, kOfferedFeatures);
  EXPECT_TRUE(s.device->connected());
  g2.transmit(virtio::NetHeader{}, plain_frame(60, 0x31));
  EXPECT_EQ(s.pass().size(), 1u) << "the guest's frames flow again";
  EXPECT_EQ(s.device->counters().totals.connections, 2u);
}

// The socket file gets the configured mode and owner (topology vhost_user.socket_mode,
// socket_owner, socket_group); one that cannot be applied fails the device's creation.
TEST(VhostUserNetDevice, TheSocketGetsTheConfiguredModeAndOwner) {
  {
    Session s({}, SocketAccess{::getuid(), ::getgid(), 0660});
    struct stat st {};
    ASSERT_EQ(::stat(s.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(st.st_uid, ::getuid());
    EXPECT_EQ(st.st_gid, ::getgid());
  }
  if (::geteuid() != 0) {  // only root may give a file away
    char tmpl[] = "/tmp/vswitch-net-device-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string path = std::string(tmpl) + "/vm.sock";
    auto made = NetDevice::create(path, 256, kMaxFrame, {}, kDefaultMaxGuestMemory, SocketAccess{0, std::nullopt, 0600});
    ASSERT_FALSE(made.has_value());
    EXPECT_NE(made.error().find("chown"), std::string::npos) << made.error();
    ::unlink(path.c_str());
    ::rmdir(tmpl);
  }
}

// A front-end that sends without pause gets at most 32 messages handled per pass: the
// loop goes back to the other ports' frames in between, and the rest is handled later.
TEST(VhostUserNetDevice, ControlMessagesAreBoundedPerPass) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(fe.try_get_features());
  s.pass();
  EXPECT_EQ(fe.take_replies(), 32u);
  s.pass();
  EXPECT_EQ(fe.take_replies(), 8u);
  EXPECT_TRUE(s.device->connected());
}

// A front-end that does not read its replies stalls only itself: no pass waits for its
// socket (one used to wait up to 1 s per reply, then disconnect), the device stops
// reading its messages until it reads, and every reply arrives once it does.
TEST(VhostUserNetDevice, RepliesNeverBlockTheLoop) {
  Session s;
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  std::size_t sent = 0;
  bool stalled = false;
  // Passes that took 500 ms or more. A device that waited for the socket would wait in
  // every pass from the one that filled it on; one slow pass is a machine that kept this
  // thread off its core, and is let through.
  int slow = 0;
  int passes = 0;
  for (int round = 0; round < 4000 && !stalled; ++round) {
    int k = 0;
    while (k < 32 && fe.try_get_features()) ++k;
    sent += static_cast<std::size_t>(k);
    stalled = k < 32;  // no room left: the device stopped reading
    const auto t0 = std::chrono::steady_clock::now();
    s.pass();
    ++passes;
    if (std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(500)) ++slow;
  }
  ASSERT_TRUE(stalled) << "the device kept reading although its replies were not read";
  ASSERT_GE(passes, 3) << "too few passes to tell a blocking device from a stopped machine";
  EXPECT_LE(slow, 1) << "of " << passes << " passes";
  ASSERT_TRUE(s.device->connected());
  std::size_t received = 0;
  for (int i = 0; i < 100000 && received < sent; ++i) {
    received += fe.take_replies();
    s.pass();
  }
  EXPECT_EQ(received, sent);
  EXPECT_TRUE(s.device->connected());
  EXPECT_EQ(s.device->counters().totals.protocol_errors, 0u);
}

TEST(VhostUserNetDevice, CountsOnFromItsPredecessor) {
  NetDeviceCounters initial;
  initial.totals.connections = 5;
  initial.totals.bad_chains = 7;
  initial.tx_errors.count(virtio::TxError::kNoFrame, 7);
  Session s(initial);
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  g.transmit(virtio::NetHeader{}, plain_frame(60, 0x77), /*writable=*/true);
  s.pass();
  const NetDeviceCounters c = s.device->counters();
  EXPECT_EQ(c.totals.connections, 6u);
  EXPECT_EQ(c.totals.bad_chains, 8u);
  EXPECT_EQ(c.tx_errors[virtio::TxError::kNoFrame], 7u);
  EXPECT_EQ(c.tx_errors[virtio::TxError::kWritableBuffer], 1u);
}

// A VMM that backs guest RAM with a file it can still shrink (hugetlbfs or tmpfs, which
// cannot be sealed) truncates it after the device mapped it. The device's next access
// takes SIGBUS: the process survives, the mapping is replaced, and that front-end is
// disconnected, counted and said; nothing read from the lost memory is handed on as a
// frame. The VMM, reconnecting with the same file, is refused at SET_MEM_TABLE (the file
// no longer holds the region): no crash loop.
struct TruncatedGuest {
  Session s;
  Guest g{/*tmpfs_files=*/true};
  FrontEnd fe{s.path};

  // Attached, a frame exchanged each way, and (before the truncation: the test's own
  // mapping of the file would take SIGBUS afterwards too) one more TX frame queued and two
  // RX buffers posted, each past the first page of its region, which holds the rings.
  void run_until_truncation() {
    s.attach(fe, g, kOfferedFeatures);
    ASSERT_TRUE(s.device->connected());
    const Bytes out = plain_frame(60, 0x11);
    g.transmit(virtio::NetHeader{}, out);
    ASSERT_EQ(s.pass().size(), 1u);
    g.post_rx(1);
    const Bytes in = plain_frame(100, 0x22);
    ResumeToken token;
    ASSERT_EQ(s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kDelivered);
    s.pass();
    ASSERT_EQ(g.rx.used_idx(), 1);
    (void)g.tx.alloc(kRingPage);
    g.transmit(virtio::NetHeader{}, plain_frame(60, 0x44));
    (void)g.rx.alloc(kRingPage);
    g.post_rx(2);
  }
  // The VMM cuts a region's file to `bytes`: with kRingPage, the rings still read as they
  // were and only the access to a frame or a buffer faults (what the device has read by
  // then is real, the rest zeros).
  static constexpr off_t kRingPage = 4096;
  void truncate(GuestDriver& d, off_t bytes) { ASSERT_EQ(::ftruncate(d.memfd(), bytes), 0); }
  // The VMM comes back with the same files: refused, counted as a protocol error.
  void reconnect_is_refused() {
    FrontEnd again(s.path);
    s.attach(again, g, kOfferedFeatures);
    EXPECT_FALSE(s.device->connected());
    EXPECT_TRUE(s.said("shorter than offset + size")) << s.log.back();
    const NetDeviceCounters c = s.device->counters();
    EXPECT_EQ(c.totals.connections, 2u);
    EXPECT_EQ(c.totals.protocol_errors, 1u);
  }
};

TEST(VhostUserNetDevice, GuestMemoryTruncatedUnderTheMappingDisconnectsOnTx) {
  TruncatedGuest t;
  t.run_until_truncation();
  t.truncate(t.g.tx, TruncatedGuest::kRingPage);
  t.g.kick_queue(kTxQueue);
  EXPECT_TRUE(t.s.pass().empty()) << "the frame copied from the lost page (zeros) is not handed on";
  EXPECT_FALSE(t.s.device->connected());
  EXPECT_TRUE(t.fe.closed_by_peer());
  EXPECT_TRUE(t.s.said("guest memory region 1 was truncated under the mapping (SIGBUS)")) << t.s.log.back();
  NetDeviceCounters c = t.s.device->counters();
  EXPECT_EQ(c.totals.guest_memory_lost, 1u);
  EXPECT_EQ(c.totals.protocol_errors, 0u) << "not mistaken for a broken ring (the lost memory reads as zeros)";
  ResumeToken token;
  const Bytes in = plain_frame(100, 0x55);
  EXPECT_EQ(t.s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kNoGuest);
  t.s.pass();
  t.reconnect_is_refused();
  EXPECT_EQ(t.s.device->counters().totals.guest_memory_lost, 1u);

  // A VMM with whole memory is served as before.
  Guest fresh;
  FrontEnd fe(t.s.path);
  t.s.attach(fe, fresh, kOfferedFeatures);
  ASSERT_TRUE(t.s.device->connected());
  fresh.transmit(virtio::NetHeader{}, plain_frame(60, 0x66));
  EXPECT_EQ(t.s.pass().size(), 1u);
}

// Every disconnect gives the guard's slots back: more front-ends come and go than the
// table has slots for their regions, and each is served.
TEST(VhostUserNetDevice, TheGuardsSlotsComeBackWithEveryDisconnect) {
  Session s;
  for (std::size_t i = 0; i < kMaxGuardedMappings; ++i) {  // two regions each
    Guest g;
    {
      FrontEnd fe(s.path);
      s.attach(fe, g, kOfferedFeatures);
      ASSERT_TRUE(s.device->connected()) << "front-end " << i << ": " << s.log.back();
    }
    s.pass();  // sees the hang-up
    ASSERT_FALSE(s.device->connected());
  }
}

TEST(VhostUserNetDevice, GuestMemoryTruncatedUnderTheMappingDisconnectsOnRx) {
  TruncatedGuest t;
  t.run_until_truncation();
  t.truncate(t.g.rx, TruncatedGuest::kRingPage);
  ResumeToken token;
  const Bytes in = plain_frame(100, 0x55);
  EXPECT_EQ(t.s.device->deliver(checked(virtio::NetHeader{}, in), in, token), NetDevice::Delivery::kNoGuest)
      << "written into memory the guest no longer has: dropped, not delivered";
  EXPECT_FALSE(t.s.device->connected());
  EXPECT_TRUE(t.s.said("guest memory region 0 was truncated under the mapping (SIGBUS)")) << t.s.log.back();
  EXPECT_EQ(t.s.device->counters().totals.guest_memory_lost, 1u);
  EXPECT_EQ(t.s.device->counters().totals.protocol_errors, 0u);
  EXPECT_TRUE(t.s.pass().empty());
  t.reconnect_is_refused();
}

// The same truncation, with SIGBUS given back its default action after the device (and
// with it the guard) was made: the device's access kills the process. The scenario above
// is a real SIGBUS in the device, which the guard turns into a disconnect.
TEST(VhostUserNetDeviceDeathTest, WithoutTheGuardTheTruncationKillsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "fast");
  EXPECT_EXIT(
      {
        TruncatedGuest t;
        t.run_until_truncation();
        ::signal(SIGBUS, SIG_DFL);
        t.truncate(t.g.tx, 0);
        t.g.kick_queue(kTxQueue);
        t.s.pass();
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

// A SIGBUS that is not in guest memory is not the guard's: a real bug still ends the
// process with SIGBUS, whether it is a fault or a signal someone sent.
void touch_truncated_file() {
  char path[] = "/dev/shm/vswitch-test-not-guest-XXXXXX";
  const int fd = ::mkostemp(path, O_CLOEXEC);
  if (fd < 0) ::_exit(10);
  ::unlink(path);
  if (::ftruncate(fd, 4096) != 0) ::_exit(11);
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED || ::ftruncate(fd, 0) != 0) ::_exit(12);
  (void)*static_cast<volatile const char*>(p);
}

// Killed by the fault's signal. Under AddressSanitizer the guard hands a SIGBUS that is
// not its own to the sanitizer's handler (installed before it), which reports it and
// aborts (abort_on_error=1): SIGABRT there; qemu-user (the aarch64 run) also turns a
// guest's fault into SIGABRT.
bool killed_by_sigbus(int status) {
  return WIFSIGNALED(status) && (WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT);
}

TEST(VhostUserNetDeviceDeathTest, ASigbusOutsideGuestMemoryStillKills) {
  GTEST_FLAG_SET(death_test_style, "fast");
  EXPECT_EXIT(
      {
        TruncatedGuest t;  // a guest mapped and guarded, elsewhere
        t.run_until_truncation();
        touch_truncated_file();
        ::_exit(0);
      },
      killed_by_sigbus, "");
  EXPECT_EXIT(
      {
        Session s;
        ::raise(SIGBUS);
        ::_exit(0);
      },
      killed_by_sigbus, "");
}

// Both under the endpoint's system call filter, which is installed after the device is
// made: the repair and the disconnect, and the way back to the default action, use only
// calls on its list (a refused one would end the process with SIGSYS instead).
std::string filter_unusable() {
  if (!syscall_filter_supported()) return "this build has no system call filter (a sanitizer build)";
  const pid_t pid = ::fork();  // qemu-user (the aarch64 run) emulates no seccomp: probe in a child
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    (void)::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    ::_exit(restrict_system_calls(SyscallFilter::kLog) ? 0 : 4);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "this kernel (or emulator) takes no seccomp filter";
  return {};
}
void enforce_filter() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || !restrict_system_calls(SyscallFilter::kEnforce)) ::_exit(3);
}

TEST(VhostUserNetDeviceDeathTest, UnderTheSystemCallFilter) {
  GTEST_FLAG_SET(death_test_style, "fast");
  if (const std::string why = filter_unusable(); !why.empty()) GTEST_SKIP() << why;
  EXPECT_EXIT(
      {
        TruncatedGuest t;
        t.run_until_truncation();
        t.truncate(t.g.tx, 0);  // ftruncate is not on the list: the VMM's doing, before
        t.g.kick_queue(kTxQueue);
        enforce_filter();
        const bool nothing = t.s.pass().empty();
        const NetDeviceCounters c = t.s.device->counters();
        ::_exit(nothing && !t.s.device->connected() && c.totals.guest_memory_lost == 1 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        TruncatedGuest t;
        t.run_until_truncation();
        enforce_filter();
        ::raise(SIGBUS);
        ::_exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

// A restarted endpoint whose predecessor had a front-end attached (the `attached` gauge
// it left in the counters) waits for that front-end: until its RX queue runs, a frame for
// the guest waits with the caller (kWaitForBuffers), and the guest gets it once back.
// Only until the deadline; and a device whose predecessor had no front-end drops at once.
TEST(VhostUserNetDevice, ARestartWaitsForThePredecessorsFrontEndToReconnect) {
  NetDeviceCounters initial;
  initial.totals.connections = 1;
  initial.totals.attached = 1;
  Session s(initial);
  EXPECT_EQ(s.device->counters().totals.attached, 0u) << "the successor has no guest yet";
  const std::uint64_t deadline = sys::monotonic_ns() + 60'000'000'000;
  s.device->await_reconnect(deadline);
  EXPECT_TRUE(s.device->awaiting_reconnect());
  EXPECT_EQ(s.device->reconnect_deadline(), std::optional<std::uint64_t>(deadline)) << "the loop wakes then";
  EXPECT_EQ(s.device->counters().totals.attached, 1u) << "waiting: a successor of this one waits too";
  const Bytes in = plain_frame(80, 0x5a);
  ResumeToken t;
  EXPECT_EQ(s.device->deliver(checked({}, in), in, t), NetDevice::Delivery::kWaitForBuffers);
  EXPECT_TRUE(s.device->arm()) << "nothing to arm: the connect itself makes fd() readable";
  s.pass();
  Guest g;
  FrontEnd fe(s.path);
  EXPECT_TRUE(readable(s.device->fd())) << "a front-end connecting wakes the caller";
  s.attach(fe, g, kOfferedFeatures);
  EXPECT_FALSE(s.device->awaiting_reconnect()) << "over once the guest's receive queue runs";
  EXPECT_EQ(s.device->counters().totals.attached, 1u);
  g.post_rx(2);
  EXPECT_EQ(s.device->deliver(checked({}, in), in, t), NetDevice::Delivery::kDelivered);
  s.pass();
  ASSERT_EQ(g.rx.used_idx(), 1);
  EXPECT_EQ(std::memcmp(g.received(0).data() + virtio::kNetHeaderBytes, in.data(), in.size()), 0);
  const NetDeviceCounters c = s.device->counters();
  EXPECT_EQ(c.totals.reconnect_waits, 1u);
  EXPECT_EQ(c.totals.connections, 2u);

  // A guest whose receive queue does not run by the deadline (its front-end connected,
  // say, but its driver is not up): dropped from then on, and said; no longer attached.
  // The deadline is moved into the past by hand rather than left to run out: a short
  // real deadline can expire before the first delivery on a loaded machine.
  Session late(initial);
  late.device->await_reconnect(sys::monotonic_ns() + 60'000'000'000);
  Guest g2;
  FrontEnd fe2(late.path);
  late.pass();  // accepted, nothing set up
  EXPECT_EQ(late.device->deliver(checked({}, in), in, t), NetDevice::Delivery::kWaitForBuffers);
  late.device->await_reconnect(sys::monotonic_ns());  // the deadline is now (a second wait counted: not checked here)
  EXPECT_FALSE(late.device->awaiting_reconnect());
  EXPECT_FALSE(late.device->reconnect_deadline().has_value());
  EXPECT_EQ(late.device->deliver(checked({}, in), in, t), NetDevice::Delivery::kNoGuest);
  EXPECT_TRUE(late.said("no guest receive queue ran"));
  EXPECT_EQ(late.device->counters().totals.attached, 0u);
}

TEST(VhostUserNetDevice, NoGuestMeansDropNotWait) {
  Session s;
  ResumeToken t{3, 2};
  EXPECT_EQ(s.device->deliver(checked({}, plain_frame(60, 0)), plain_frame(60, 0), t), NetDevice::Delivery::kNoGuest);
  EXPECT_EQ(t.pack(), 0u);
  EXPECT_TRUE(s.device->arm());
  s.pass();  // the caller's pass ends
  const Bytes huge(kMaxFrame + 1);
  Guest g;
  FrontEnd fe(s.path);
  s.attach(fe, g, kOfferedFeatures);
  EXPECT_EQ(s.device->deliver(checked(virtio::NetHeader{}, huge), huge, t), NetDevice::Delivery::kTooLarge);
}

}  // namespace
}  // namespace vswitch::endpoints::vhost_user
