// NetDevice: the virtio-net device a vhost-user front-end (a VM's QEMU, DPDK's
// virtio-user) drives over a unix socket. It owns the listening socket, one connection at
// a time, the back-end state (features, guest memory, the two queues), the offloads it
// completes in software for a guest that did not negotiate them, and its counter block.
// It knows nothing of where frames come from or go to: its caller hands it frames for the
// guest and takes the guest's frames, once per pass of its own loop.
//
// When the front-end goes away (or breaks the protocol: counted, logged, disconnected) the
// device forgets its memory and waits for it to come back (QEMU reconnect=1).
//
// Guest memory whose file the VMM truncates under the mapping (hugetlbfs and tmpfs files
// cannot be sealed) raises SIGBUS on the next access; the process-wide guard
// (sigbus_guard.hpp, installed when the first device is made) replaces the mapping with
// zeros and the access goes on. The device checks for that after every receive(), every
// frame written into the guest, flush() and arm() (one relaxed load and a compare while
// nothing happened), and disconnects that front-end (counted as guest_memory_lost, said
// with the region) before anything read from the lost memory is handed on: the frame
// being taken is dropped, the frame being delivered is reported kNoGuest. A front-end
// coming back with the same file is refused at SET_MEM_TABLE (the file no longer holds
// its regions).
//
// fd() is an epoll set of the listening socket, the connection and the kick eventfds.
// Control messages and kicks are looked at once per pass (one epoll_wait(0), on the
// pass's first receive() or deliver()); TX chains are gathered straight into the caller's
// buffer; RX frames go into the guest's buffers; used elements are published and the
// guest interrupted once per pass (flush()), after the fence, as EVENT_IDX or the flags
// say. A frame for a guest that has posted no buffer waits with its caller
// (kWaitForBuffers, counted once per wait as rx_no_buffers) and arm() asks the guest to
// kick when it posts more.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "endpoints/vhost_user/backend.hpp"
#include "endpoints/vhost_user/connection.hpp"
#include "endpoints/vhost_user/net_device_counters.hpp"
#include "endpoints/vhost_user/sigbus_guard.hpp"
#include "endpoints/virtio/net_header.hpp"
#include "endpoints/virtio/net_queues.hpp"
#include "shm/sys/fd.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::endpoints::vhost_user {

// How far a delivery that had to wait got: kept by the caller with the frame it belongs
// to (a zero token for a frame not tried before) and handed back on every retry. A TCP
// GSO frame cut into segments for a guest without GUEST_TSO resumes after the segments
// that guest already has, so none is delivered twice, however many frames wait at once.
// A token from before the queues last changed (a new connection, a ring stopped or
// restarted) starts the frame over: its segments may be repeated, never skipped.
struct ResumeToken {
  std::uint32_t epoch = 0;         // the queues' epoch in which segments [0, next_segment) went out
  std::uint32_t next_segment = 0;

  // As one word, for a caller that keeps tokens of several kinds of device.
  [[nodiscard]] std::uint64_t pack() const noexcept {
    return (std::uint64_t{epoch} << 32) | next_segment;
  }
  [[nodiscard]] static ResumeToken unpack(std::uint64_t word) noexcept {
    return ResumeToken{static_cast<std::uint32_t>(word >> 32), static_cast<std::uint32_t>(word)};
  }
};

class NetDevice {
 public:
  // Listens on `socket_path` (a stale socket file is replaced); accepts queues of at most
  // `max_queue_size` entries and frames (without the virtio-net header) of at most
  // `max_frame_bytes` for the guest; counts on from `initial` (a restarted endpoint's
  // predecessor's totals); maps at most `max_guest_memory` bytes of a front-end's memory;
  // the socket file gets `access` (owner, group, mode); a front-end may give its guest an
  // MTU of at most `max_mtu` (VIRTIO_NET_F_MTU, the switch port's).
  [[nodiscard]] static sys::Result<std::unique_ptr<NetDevice>, std::string> create(
      const std::string& socket_path, std::uint16_t max_queue_size, std::size_t max_frame_bytes,
      const NetDeviceCounters& initial = {}, std::uint64_t max_guest_memory = kDefaultMaxGuestMemory,
      const SocketAccess& access = {}, std::uint32_t max_mtu = kMaxGuestMtu);
  // The same on a listening socket made elsewhere (listen_unix): vswitchd binds it before
  // it forks the endpoint, so the endpoint needs no privilege for it, and an endpoint that
  // restarts serves the same socket (a front-end that reconnects meanwhile waits in its
  // backlog).
  [[nodiscard]] static sys::Result<std::unique_ptr<NetDevice>, std::string> create_on(
      sys::Fd listening, std::uint16_t max_queue_size, std::size_t max_frame_bytes,
      const NetDeviceCounters& initial = {}, std::uint64_t max_guest_memory = kDefaultMaxGuestMemory,
      std::uint32_t max_mtu = kMaxGuestMtu);
  ~NetDevice();
  NetDevice(const NetDevice&) = delete;
  NetDevice& operator=(const NetDevice&) = delete;

  // Where the device says that a front-end came or went, and why (off the data path).
  void set_log(std::function<void(const std::string&)> log) { log_ = std::move(log); }

  // Readable when the device has something to look at: a connection, a control message,
  // a kick.
  [[nodiscard]] int fd() const noexcept { return epoll_.get(); }

  // The guest's next frame, 12-byte virtio-net header first, gathered into `buf` (which
  // holds the largest record); its size, or nothing when the guest has none (or broke its
  // TX queue: disconnected).
  [[nodiscard]] std::optional<std::size_t> receive(std::span<std::byte> buf) noexcept;

  enum class Delivery : std::uint8_t {
    kDelivered,
    kWaitForBuffers,  // the guest has not posted enough RX buffers: keep the frame and
                      // its token, retry after arm() (or the next pass)
    kNoGuest,         // dropped: no guest, its RX queue is not running, or it just broke
    kTooLarge,        // dropped: larger than max_frame_bytes, or than the guest's receive
                      // buffers can ever hold
    kUnsupported,     // dropped: a GSO frame that cannot be segmented in software
    kMtuExceeded,     // dropped: not GSO, and longer than the MTU the front-end gave its
                      // guest (NET_SET_MTU) plus an Ethernet header and a VLAN tag
  };
  // What a frame of a full MTU adds: an Ethernet header and one 802.1Q tag.
  static constexpr std::size_t kEthernetAndVlanBytes = 18;
  // Delivers a frame with the header parse() validated for it; `frame` may lie in memory
  // another party writes: it is read once. `resume`: see ResumeToken; reset to zero unless
  // the answer is kWaitForBuffers. `head`, when given, is what the guest gets in place of
  // the frame's first head.size() bytes (the caller's checked copy of its addresses), in
  // the frame and in every segment cut from it.
  Delivery deliver(const virtio::CheckedNetHeader& checked, std::span<const std::byte> frame,
                   ResumeToken& resume, std::span<const std::byte> head = {}) noexcept;

  // Once per pass, after receiving and delivering: publish used elements and interrupt
  // the guest where it asked to be.
  void flush() noexcept;
  // At the start of a pass: control messages and kicks, which are otherwise looked at on
  // the pass's first receive() or deliver().
  void begin_pass() noexcept {
    if (!serviced_) service();
  }
  // The receive queue's used index as the next publish makes it (the frames delivered so
  // far included), or nothing while no receive queue runs.
  [[nodiscard]] std::optional<std::uint16_t> rx_mark() noexcept;
  // Publishes the receive queue's used elements ([VR]); whether the guest is interrupted
  // for them is flush()'s to decide, once per pass.
  void publish_rx() noexcept {
    if (auto* q = backend_.queue(kRxQueue)) q->publish_used();
  }
  // Once after each (re)start of the receive queue (a front-end's connection or queue
  // set-up, seen by a pass's first look at control messages): the used index it starts
  // at, which its front-end restarts from (QEMU restores the queue to the used index the
  // ring holds). Nothing otherwise.
  [[nodiscard]] std::optional<std::uint16_t> take_rx_start() noexcept;
  // Just before the caller sleeps on fd(): ask the guest to kick for new TX chains (and
  // for RX buffers while a frame waits). False when work arrived meanwhile: do not sleep.
  [[nodiscard]] bool arm() noexcept;
  // Instead of arm(), before the caller sleeps on a timer: the guest need not kick for
  // new TX chains (they are taken when the timer ends). arm() asks for kicks again.
  void quiet() noexcept;

  // The port's administrative link state. Down: the front-end is disconnected, and every
  // front-end that connects until it is up again is closed at once (counted in
  // connections_refused, said once per down). A vhost-user back-end has no other way to
  // show a QEMU guest its link: QEMU keeps virtio-net's link status itself, sets it down
  // when its vhost-user socket closes and up when a connection is set up again
  // (reconnect=N retries every N seconds). Up: front-ends are taken again.
  void set_link(bool up) noexcept;
  [[nodiscard]] bool link_up() const noexcept { return link_up_; }

  // For an endpoint that starts where a predecessor left off (a crash, the watchdog, a
  // reload): the predecessor had a guest (its `attached` gauge: a receive queue running,
  // or itself waiting for one), whose front-end comes back (QEMU reconnect=N tries every
  // N seconds). Until the guest's receive queue runs, or until `deadline_ns` (monotonic),
  // a frame for the guest waits with its caller (kWaitForBuffers: it stays in its
  // channel, as for a guest short of buffers) instead of being dropped as kNoGuest, so the
  // frames that come while the endpoint restarts are not dropped for it. Meanwhile
  // `attached` stays 1 (a successor of this one waits too). Counted in reconnect_waits.
  void await_reconnect(std::uint64_t deadline_ns) noexcept;
  // The wait's end, while it lasts.
  [[nodiscard]] std::optional<std::uint64_t> reconnect_deadline() const noexcept;
  [[nodiscard]] bool awaiting_reconnect() const noexcept { return reconnect_deadline().has_value(); }

  [[nodiscard]] bool connected() const noexcept { return conn_.has_value(); }
  [[nodiscard]] std::uint64_t features() const noexcept { return backend_.features(); }
  // Totals, continued from the `initial` block the device was made with (the `attached`
  // gauge is this device's own).
  [[nodiscard]] NetDeviceCounters counters() const noexcept;

 private:
  NetDevice(sys::Fd listen, sys::Fd epoll, std::uint16_t max_queue_size, std::size_t max_frame_bytes,
            const NetDeviceCounters& initial, std::uint64_t max_guest_memory, std::uint32_t max_mtu);
  void service() noexcept;  // accept, control messages, kicks
  void accept() noexcept;
  void read_control() noexcept;
  static constexpr int kMaxMessagesPerPass = 32;  // QEMU's whole start-up (about 20) in one pass
  // Sends a reply; false when the connection was closed for it.
  bool send_reply(std::span<const std::byte> reply) noexcept;
  // Sends the rest of a reply the socket did not take, then reads on.
  void finish_reply() noexcept;
  // Watches the connection for input, or (output) for room to send a waiting reply.
  bool watch_connection(bool output) noexcept;
  // After a control message: the RX queue takes the negotiated MRG_RXBUF.
  void follow_features() noexcept;
  // Closes the connection and forgets the guest; `why` (if any) is a protocol error. A
  // region lost under the mapping is the reason instead, whichever symptom came first.
  void disconnect(const std::string& why) noexcept;
  // Whether the guard replaced one of this guest's mappings since the last look: if so it
  // disconnected, and whatever was read from guest memory since may be zeros. The check
  // that costs nothing while nothing happened is inline; the rest is off the data path.
  [[nodiscard]] bool guest_memory_lost() noexcept {
    if (sigbus_repairs() == repairs_seen_) [[likely]] return false;
    return notice_repairs();
  }
  bool notice_repairs() noexcept;
  // Adds fd to (on) or removes it from the epoll set; false when adding failed (the
  // reason in watch_error_).
  bool watch(int fd, bool on) noexcept;
  // Watches the current kick descriptors; false when epoll refused one.
  bool rewatch_kick() noexcept;
  void notify(std::uint32_t queue) noexcept;
  bool arm_queues() noexcept;  // arm() before its look at guest memory
  void new_epoch() noexcept {
    if (++epoch_ == 0) epoch_ = 1;  // 0 is the token of a frame not tried before
  }
  Delivery deliver_one(virtio::SplitQueue& q, const virtio::NetHeader& header,
                       std::span<const std::byte> frame, std::span<const std::byte> head = {}) noexcept;
  Delivery deliver_segmented(virtio::SplitQueue& q, const virtio::NetHeader& header,
                             std::span<const std::byte> frame, ResumeToken& resume,
                             std::span<const std::byte> head) noexcept;
  void say(const std::string& m) noexcept;

  sys::Fd listen_;
  sys::Fd epoll_;
  std::optional<Connection> conn_;
  std::uint32_t epoch_ = 0;  // counts connections and queue changes (never 0 once one came)
  Backend backend_;
  // Follows the negotiated MRG_RXBUF (see follow_features()); nothing negotiated: one
  // chain per frame.
  virtio::RxQueue rx_{false};
  virtio::NetQueueCounters net_;  // bad chains, by reason (seeded from `initial`)
  NetDeviceTotals totals_;        // the rest (bad_chains comes from net_)
  std::function<void(const std::string&)> log_;
  int watched_kick_ = -1;
  std::string watch_error_;
  bool serviced_ = false;    // service() ran in this pass
  bool link_up_ = true;      // set_link
  bool refusal_said_ = false;  // a front-end was refused for the link since it went down
  bool rx_waiting_ = false;  // a frame waits for the guest to post RX buffers
  std::uint64_t reconnect_deadline_ns_ = 0;  // await_reconnect() (0: not waiting)
  std::uint32_t rx_start_epoch_ = 0;  // the epoch take_rx_start() last reported a start in
  int watched_rx_kick_ = -1;
  std::uint16_t tx_used_seen_ = 0, rx_used_seen_ = 0;
  std::uint64_t repairs_seen_ = 0;  // sigbus_repairs() when the device last looked
  // Software offloads for a guest that did not negotiate them (see deliver()).
  static constexpr std::size_t kMaxSoftwareSegments = 1024;  // gso_size >= 64 for a 64 KiB frame
  std::vector<std::byte> private_;  // a private copy of the frame
  std::vector<std::byte> segment_;  // one segment being built
};

}  // namespace vswitch::endpoints::vhost_user
