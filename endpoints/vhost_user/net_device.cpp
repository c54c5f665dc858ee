#include "endpoints/vhost_user/net_device.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "endpoints/virtio/net_offload.hpp"
#include "shm/sys/clock.hpp"
#include "shm/sys/error.hpp"
#include "shm/sys/eventfd.hpp"

namespace vswitch::endpoints::vhost_user {

sys::Result<std::unique_ptr<NetDevice>, std::string> NetDevice::create(const std::string& socket_path,
                                                                       std::uint16_t max_queue_size,
                                                                       std::size_t max_frame_bytes,
                                                                       const NetDeviceCounters& initial,
                                                                       std::uint64_t max_guest_memory,
                                                                       const SocketAccess& access,
                                                                       std::uint32_t max_mtu) {
  auto l = listen_unix(socket_path, access);
  if (!l) return sys::Unexpected(l.error());
  return create_on(std::move(l.value()), max_queue_size, max_frame_bytes, initial, max_guest_memory, max_mtu);
}

sys::Result<std::unique_ptr<NetDevice>, std::string> NetDevice::create_on(sys::Fd listening,
                                                                          std::uint16_t max_queue_size,
                                                                          std::size_t max_frame_bytes,
                                                                          const NetDeviceCounters& initial,
                                                                          std::uint64_t max_guest_memory,
                                                                          std::uint32_t max_mtu) {
  // Before any guest memory is mapped, and before the endpoint's system call filter.
  if (auto st = install_sigbus_guard(); !st) return sys::Unexpected(st.error());
  sys::Fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep.valid()) return sys::Unexpected(sys::SysError{"epoll_create1", errno}.message());
  std::unique_ptr<NetDevice> d(
      new NetDevice(std::move(listening), std::move(ep), max_queue_size, max_frame_bytes, initial, max_guest_memory,
                    max_mtu));
  if (!d->watch(d->listen_.get(), true)) return sys::Unexpected(d->watch_error_);
  return d;
}

NetDevice::NetDevice(sys::Fd listen, sys::Fd epoll, std::uint16_t max_queue_size, std::size_t max_frame_bytes,
                     const NetDeviceCounters& initial, std::uint64_t max_guest_memory, std::uint32_t max_mtu)
    : listen_(std::move(listen)),
      epoll_(std::move(epoll)),
      backend_(max_queue_size, max_guest_memory, max_mtu),
      totals_(initial.totals),
      repairs_seen_(sigbus_repairs()),
      private_(max_frame_bytes),
      segment_(max_frame_bytes) {
  // The queues count bad chains by reason; they count on from the predecessor's totals.
  net_.bad_chains = initial.totals.bad_chains;
  for (std::size_t i = 0; i < net_.chain_errors.size(); ++i) net_.chain_errors[i] = initial.chain_errors.by_reason[i];
  for (std::size_t i = 0; i < net_.tx_errors.size(); ++i) net_.tx_errors[i] = initial.tx_errors.by_reason[i];
  for (std::size_t i = 0; i < net_.rx_drops.size(); ++i) net_.rx_drops[i] = initial.rx_drops.by_reason[i];
}

NetDevice::~NetDevice() = default;

void NetDevice::say(const std::string& m) noexcept {
  if (log_) log_(m);
}

bool NetDevice::watch(int fd, bool on) noexcept {
  if (fd < 0) return true;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) == 0) return true;
  // Removing fails only for a descriptor that is no longer in the set (ENOENT) or open
  // (EBADF): either way it is out of the set, which is all a removal wants.
  if (!on) return true;
  watch_error_ = sys::SysError{"epoll_ctl(ADD)", errno}.message();
  return false;
}

bool NetDevice::rewatch_kick() noexcept {
  const int kick = backend_.queue(kTxQueue) != nullptr ? backend_.kick_fd(kTxQueue) : -1;
  if (kick != watched_kick_) {
    if (watched_kick_ >= 0) watch(watched_kick_, false);
    watched_kick_ = -1;
    if (!watch(kick, true)) return false;
    watched_kick_ = kick;
  }
  // The RX kick matters only while a frame waits for buffers.
  const int rx = rx_waiting_ && backend_.queue(kRxQueue) != nullptr ? backend_.kick_fd(kRxQueue) : -1;
  if (rx != watched_rx_kick_) {
    if (watched_rx_kick_ >= 0) watch(watched_rx_kick_, false);
    watched_rx_kick_ = -1;
    if (!watch(rx, true)) return false;
    watched_rx_kick_ = rx;
  }
  return true;
}

void NetDevice::disconnect(const std::string& why) noexcept {
  if (const auto region = backend_.lost_region()) {
    // Whatever else went wrong was read from its zeros (a ring index that jumped, say).
    ++totals_.guest_memory_lost;
    say("vhost-user front-end disconnected: guest memory region " + std::to_string(*region) +
        " was truncated under the mapping (SIGBUS)");
  } else if (!why.empty()) {
    ++totals_.protocol_errors;
    say("vhost-user front-end disconnected: " + why);
  } else {
    say("vhost-user front-end disconnected");
  }
  if (watched_kick_ >= 0) watch(watched_kick_, false);
  watched_kick_ = -1;
  if (watched_rx_kick_ >= 0) watch(watched_rx_kick_, false);
  watched_rx_kick_ = -1;
  rx_waiting_ = false;
  rx_.forget_pool();  // its chains lived in the guest memory about to be unmapped
  backend_.reset();
  if (conn_) watch(conn_->fd(), false);
  conn_.reset();
}

namespace {

// Who connected (SO_PEERCRED: the peer's pid, uid and gid when it called connect()), for
// the log line.
std::string describe_peer(int fd) {
  ucred c{};
  socklen_t n = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &n) != 0) return "peer unknown: " + std::string(std::strerror(errno));
  return "pid " + std::to_string(c.pid) + ", uid " + std::to_string(c.uid) + ", gid " + std::to_string(c.gid);
}

// Whether the peer of a connected socket has gone (its hang-up not read yet).
bool hung_up(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

bool NetDevice::notice_repairs() noexcept {
  repairs_seen_ = sigbus_repairs();
  // Pairs with the handler's release increment of the count: its lost mark is seen here.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (!backend_.lost_region()) return false;  // another device's memory (a process may hold several)
  disconnect("");
  return true;
}

void NetDevice::accept() noexcept {
  sys::Fd s(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!s.valid()) return;  // the front-end gave up meanwhile (or EAGAIN): nothing to do
  const std::string peer = describe_peer(s.get());
  // A front-end that went away may not have been noticed yet (its hang-up can wait in
  // this very epoll batch, behind the listening socket): let it go before judging.
  if (conn_ && hung_up(conn_->fd())) disconnect("");
  if (!link_up_) {
    ++totals_.connections_refused;
    if (!refusal_said_) say("vhost-user connection refused: the link is down (" + peer + "; said once per down)");
    refusal_said_ = true;
    return;  // `s` closes: the front-end keeps its guest's link down and tries again later
  }
  if (conn_) {
    // One front-end at a time. vhost-user spec, VHOST_USER_SET_OWNER: "It sets the
    // current front-end as an owner of the session"; a second one would take the guest's
    // memory and queues from under it. Whoever else connects is closed at once, counted
    // and said.
    ++totals_.connections_refused;
    say("vhost-user connection refused: a front-end is already connected (" + peer + ")");
    return;  // `s` closes
  }
  conn_.emplace(std::move(s));
  new_epoch();
  ++totals_.connections;
  say("vhost-user front-end connected (" + peer + ")");
  if (!watch(conn_->fd(), true)) disconnect("its socket cannot be watched: " + watch_error_);
}

void NetDevice::set_link(bool up) noexcept {
  if (up == link_up_) return;
  link_up_ = up;
  refusal_said_ = false;
  if (up) {
    say("link up: front-ends are taken again");
    return;
  }
  if (conn_) {
    say("link down: disconnecting the front-end");
    disconnect("");
  }
}

bool NetDevice::watch_connection(bool output) noexcept {
  epoll_event ev{};
  ev.events = output ? EPOLLOUT : EPOLLIN;
  ev.data.fd = conn_->fd();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, conn_->fd(), &ev) == 0) return true;
  watch_error_ = sys::SysError{"epoll_ctl(MOD)", errno}.message();
  return false;
}

void NetDevice::finish_reply() noexcept {
  const Connection::Sent sent = conn_->flush();
  if (sent == Connection::Sent::kError) {
    disconnect("could not send a reply");
    return;
  }
  if (sent == Connection::Sent::kPending) return;  // still not reading: wait on
  if (!watch_connection(false)) {
    disconnect("its socket cannot be watched: " + watch_error_);
    return;
  }
  read_control();
}

void NetDevice::read_control() noexcept {
  // At most kMaxMessagesPerPass messages per pass, so that a front-end sending without
  // pause cannot keep the loop from the frames of every other port; the rest waits in the
  // socket, which the level-triggered set reports again on the next pass. No message is
  // read while a reply waits to be sent (the front-end is not reading): the socket is
  // then watched for room to write instead, and the loop never blocks on it.
  for (int handled = 0; handled < kMaxMessagesPerPass && conn_ && !conn_->sending(); ++handled) {
    auto r = conn_->read();
    if (r.status == Connection::Read::kPending) return;
    if (r.status == Connection::Read::kClosed) {
      disconnect("");
      return;
    }
    if (r.status == Connection::Read::kError) {
      disconnect(r.error);
      return;
    }
    // A control message may stop the RX queue: give pooled RX chains back first, so no
    // descriptor is ever lost to the guest.
    if (auto* rxq = backend_.queue(kRxQueue)) {
      rx_.release_pool(*rxq);
      rxq->publish_used();
    }
    const Request req = r.message->request;
    auto out = backend_.handle(std::move(*r.message));
    if (!out) {
      disconnect(std::string(to_string(req)) + ": " + out.error());
      return;
    }
    follow_features();
    if (!out->notice.empty()) say(out->notice);
    if (out->reply && !send_reply(*out->reply)) return;
    if (out->queues_changed) {
      new_epoch();  // segments sent before went to a ring that is gone or restarted
      if (!rewatch_kick()) {
        disconnect("a kick eventfd epoll refuses: " + watch_error_);
        return;
      }
      // A (re)started ring may already hold chains whose kick came before it started (or
      // never comes): this pass's pops look at it without waiting for one. Interrupts
      // count from where it stands now.
      if (auto* rxq = backend_.queue(kRxQueue)) {
        rx_used_seen_ = rxq->next_used();
        reconnect_deadline_ns_ = 0;  // the guest's receive queue runs again: the wait is over
      }
      if (auto* txq = backend_.queue(kTxQueue)) tx_used_seen_ = txq->next_used();
    }
  }
}

bool NetDevice::send_reply(std::span<const std::byte> reply) noexcept {
  const Connection::Sent sent = conn_->send(reply);
  if (sent == Connection::Sent::kError) {
    disconnect("could not send a reply");
    return false;
  }
  if (sent == Connection::Sent::kPending && !watch_connection(true)) {
    disconnect("its socket cannot be watched: " + watch_error_);
    return false;
  }
  return true;
}

void NetDevice::follow_features() noexcept {
  // virtio 1.x 5.1.6.4.1: "If VIRTIO_NET_F_MRG_RXBUF has not been negotiated, the device
  // MUST set num_buffers to 1" and "MUST use only a single descriptor [chain] if
  // VIRTIO_NET_F_MRG_RXBUF was not negotiated": a frame that does not fit one chain is
  // dropped (rx_buffer_too_small), never spread over several.
  // The pool is empty here (given back before the message, or forgotten with the last
  // connection), so no chain popped under one rule is used under the other.
  const bool mergeable = backend_.has(kFeatureMrgRxbuf);
  if (rx_.mergeable() != mergeable && rx_.pooled() == 0) rx_ = virtio::RxQueue(mergeable);
}

void NetDevice::service() noexcept {
  serviced_ = true;
  epoll_event events[4];
  const int n = ::epoll_wait(epoll_.get(), events, 4, 0);
  // n < 0 (EINTR; nothing else can happen to a valid set with a valid buffer): nothing
  // seen this pass; the level-triggered set reports it again on the next.
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == listen_.get()) {
      accept();
    } else if (conn_ && fd == conn_->fd()) {
      if (conn_->sending()) finish_reply();
      else read_control();
    } else if (fd == watched_kick_ || fd == watched_rx_kick_) {
      // An error or hang-up on a kick eventfd would be reported on every pass, a loop
      // spinning on it: the front-end's fault, disconnect. (Only eventfds are accepted,
      // so this should not happen; epoll reports both whether asked for or not.)
      if ((events[i].events & (EPOLLERR | EPOLLHUP)) != 0) {
        disconnect("kick eventfd reported an error or hang-up");
        continue;
      }
      // Drained; the pops below see what it announced. A kick descriptor that cannot be
      // read would be reported readable forever: the front-end's fault, disconnect.
      if (auto d = sys::drain_counter(fd); !d) disconnect("kick eventfd: " + d.error().message());
    }
  }
}

std::optional<std::size_t> NetDevice::receive(std::span<std::byte> buf) noexcept {
  if (!serviced_) service();
  auto* q = backend_.queue(kTxQueue);
  if (q == nullptr) return std::nullopt;
  const virtio::TxOffloads offloads{backend_.has(kFeatureCsum), backend_.has(kFeatureHostTso4),
                                    backend_.has(kFeatureHostTso6), backend_.has(kFeatureHostEcn)};
  const auto r = virtio::tx_pop(*q, buf, offloads, net_);
  // Memory lost under the mapping reads as zeros: whatever tx_pop made of it (a frame, an
  // empty or a broken ring) is dropped with the connection, never handed on.
  if (guest_memory_lost()) return std::nullopt;
  switch (r.status) {
    case virtio::TxResult::Status::kFrame:
      return r.bytes;
    case virtio::TxResult::Status::kEmpty:
      return std::nullopt;
    case virtio::TxResult::Status::kBroken:
      disconnect("TX queue broken (avail index jump or too many chains in flight)");
      return std::nullopt;
  }
  return std::nullopt;
}

NetDevice::Delivery NetDevice::deliver(const virtio::CheckedNetHeader& checked, std::span<const std::byte> frame,
                                       ResumeToken& resume, std::span<const std::byte> head) noexcept {
  const virtio::NetHeader& header = checked.get();
  head = head.first(std::min(head.size(), frame.size()));
  if (!serviced_) service();
  auto* q = backend_.queue(kRxQueue);
  if (q == nullptr) {  // no guest (yet), or its RX queue is not running
    rx_waiting_ = false;
    resume = {};
    // The predecessor's front-end on its way back (await_reconnect): the frame waits in
    // its channel. The loop sleeps on fd(), which the front-end's connect and its control
    // messages make readable; nothing else is armed for it.
    if (reconnect_deadline_ns_ != 0) {
      if (reconnect_deadline()) return Delivery::kWaitForBuffers;
      reconnect_deadline_ns_ = 0;
      say("no guest receive queue ran within the wait after the restart: frames for the guest are dropped until "
          "one runs");
    }
    return Delivery::kNoGuest;
  }
  if (frame.size() > private_.size()) {
    resume = {};
    return Delivery::kTooLarge;
  }
  // virtio 1.x 5.1.6.3.2 (with VIRTIO_NET_F_MTU): "The device MUST NOT pass received
  // packets that exceed mtu (plus low level ethernet header length) size with gso_type
  // NONE or ECN to the driver." A VLAN tag is allowed on top, as for the switch port.
  // Only a driver that negotiated VIRTIO_NET_F_MTU took that MTU.
  if (const std::uint32_t mtu = backend_.mtu(); mtu != 0 && backend_.has(kFeatureMtu) &&
                                                !virtio::is_gso(header.gso_type) &&
                                                frame.size() > std::size_t{mtu} + kEthernetAndVlanBytes) {
    resume = {};
    return Delivery::kMtuExceeded;
  }
  // Offloads the guest did not accept are completed here, as a NIC would: a TCP GSO
  // frame is cut into gso_size segments, a partial checksum is filled in. The work is
  // done on a private copy (the frame may lie in memory another party writes).
  const std::uint8_t gso = header.gso_type & static_cast<std::uint8_t>(~virtio::kGsoEcn);
  const bool ecn_ok = (header.gso_type & virtio::kGsoEcn) == 0 || backend_.has(kFeatureGuestEcn);
  const bool gso_ok = gso == virtio::kGsoNone ||
                      (ecn_ok && ((gso == virtio::kGsoTcpV4 && backend_.has(kFeatureGuestTso4)) ||
                                  (gso == virtio::kGsoTcpV6 && backend_.has(kFeatureGuestTso6))));
  const bool csum_ok = (header.flags & virtio::kNetHdrFlagNeedsCsum) == 0 || backend_.has(kFeatureGuestCsum);
  if (!gso_ok) return deliver_segmented(*q, header, frame, resume, head);
  resume = {};
  if (!csum_ok) {
    std::memcpy(private_.data(), frame.data(), frame.size());  // frame.size() <= private_.size()
    if (!head.empty()) std::memcpy(private_.data(), head.data(), head.size());
    const std::span<std::byte> copy(private_.data(), frame.size());
    virtio::complete_checksum(header, copy);
    const virtio::NetHeader plain;  // checksum done: nothing left for the guest to do
    const Delivery d = deliver_one(*q, plain, copy);
    if (d == Delivery::kDelivered) ++totals_.csum_completed;
    return d;
  }
  return deliver_one(*q, virtio::header_for_driver(header, backend_.has(kFeatureGuestCsum)), frame, head);
}

NetDevice::Delivery NetDevice::deliver_one(virtio::SplitQueue& q, const virtio::NetHeader& header,
                                           std::span<const std::byte> frame, std::span<const std::byte> head) noexcept {
  const virtio::RxQueue::Status status = rx_.deliver(q, header, frame, net_, head);
  // Written into memory the guest no longer has (or into buffers read from its zeros):
  // dropped, not delivered; `q` went with the connection.
  if (guest_memory_lost()) return Delivery::kNoGuest;
  switch (status) {
    case virtio::RxQueue::Status::kDelivered:
      if (rx_waiting_) {
        q.disable_notification();  // buffers came: RX kicks are not needed any more
        rx_waiting_ = false;
      }
      return Delivery::kDelivered;
    case virtio::RxQueue::Status::kNoBuffers:
      // Wait for the guest's buffers (the "need K" wait): the frame stays with the caller
      // and arm() asks the guest to kick when it posts more. Counted once per wait.
      if (!rx_waiting_) ++totals_.rx_no_buffers;
      rx_waiting_ = true;
      if (!rewatch_kick()) {
        disconnect("an RX kick eventfd epoll refuses: " + watch_error_);
        return Delivery::kNoGuest;
      }
      return Delivery::kWaitForBuffers;
    case virtio::RxQueue::Status::kDropped:
      rx_waiting_ = false;
      return Delivery::kTooLarge;
    case virtio::RxQueue::Status::kBroken:
      disconnect("RX queue broken (avail index jump or too many chains in flight)");
      return Delivery::kNoGuest;
  }
  return Delivery::kNoGuest;
}

NetDevice::Delivery NetDevice::deliver_segmented(virtio::SplitQueue& q, const virtio::NetHeader& header,
                                                 std::span<const std::byte> frame, ResumeToken& resume,
                                                 std::span<const std::byte> head) noexcept {
  std::memcpy(private_.data(), frame.data(), frame.size());  // frame.size() <= private_.size()
  if (!head.empty()) std::memcpy(private_.data(), head.data(), head.size());  // every segment's header comes from here
  auto seg = virtio::TcpSegmenter::parse(header, std::span<const std::byte>(private_.data(), frame.size()),
                                         kMaxSoftwareSegments);
  if (!seg) {
    resume = {};
    return Delivery::kUnsupported;
  }
  // A retry resumes after the segments this guest already has; a token of an earlier
  // epoch (the queues changed meanwhile) starts over.
  std::size_t i = resume.epoch == epoch_ ? resume.next_segment : 0;
  // Each segment is a plain frame for this guest: held to its MTU like one (see deliver()).
  // The first is the largest (every one but the last carries gso_size), so one too large
  // is found before any segment goes out.
  const std::uint32_t mtu = backend_.has(kFeatureMtu) ? backend_.mtu() : 0;
  for (; i < seg->segments(); ++i) {
    const std::size_t n = seg->build(i, segment_);
    if (mtu != 0 && n > std::size_t{mtu} + kEthernetAndVlanBytes) {
      resume = {};
      return Delivery::kMtuExceeded;
    }
    const Delivery d = deliver_one(q, virtio::NetHeader{}, std::span<const std::byte>(segment_.data(), n));
    if (d == Delivery::kWaitForBuffers) {
      resume = ResumeToken{epoch_, static_cast<std::uint32_t>(i)};  // i < kMaxSoftwareSegments
      return d;
    }
    if (d != Delivery::kDelivered) {
      resume = {};
      return d;
    }
    ++totals_.segments_made;
  }
  resume = {};
  return Delivery::kDelivered;
}

void NetDevice::notify(std::uint32_t index) noexcept {
  auto* q = backend_.queue(index);
  if (q == nullptr) return;
  std::uint16_t& seen = index == kTxQueue ? tx_used_seen_ : rx_used_seen_;
  if (q->next_used() == seen) return;
  seen = q->next_used();
  q->publish_used();  // [VR]
  if (q->needs_notification() && backend_.call_fd(index) >= 0) {  // [VF1] inside
    if (auto st = sys::signal_counter(backend_.call_fd(index)); !st) {
      disconnect("call eventfd: " + st.error().message());  // the interrupt cannot reach the guest
      return;
    }
    ++totals_.interrupts;
  }
}

std::optional<std::uint16_t> NetDevice::rx_mark() noexcept {
  auto* q = backend_.queue(kRxQueue);
  if (q == nullptr) return std::nullopt;
  return q->next_used();
}

std::optional<std::uint16_t> NetDevice::take_rx_start() noexcept {
  auto* q = backend_.queue(kRxQueue);
  // Every new connection and every queue change starts an epoch (a change of the TX
  // queue alone reports the receive queue as it stands: a start where it already was).
  if (q == nullptr || rx_start_epoch_ == epoch_) return std::nullopt;
  rx_start_epoch_ = epoch_;
  return q->next_used();
}

void NetDevice::await_reconnect(std::uint64_t deadline_ns) noexcept {
  reconnect_deadline_ns_ = deadline_ns == 0 ? 1 : deadline_ns;
  ++totals_.reconnect_waits;
}

std::optional<std::uint64_t> NetDevice::reconnect_deadline() const noexcept {
  if (reconnect_deadline_ns_ == 0 || sys::monotonic_ns() >= reconnect_deadline_ns_) return std::nullopt;
  return reconnect_deadline_ns_;
}

NetDeviceCounters NetDevice::counters() const noexcept {
  NetDeviceCounters c;
  c.totals = totals_;
  c.totals.attached = backend_.running(kRxQueue) || awaiting_reconnect() ? 1 : 0;
  c.totals.bad_chains = net_.bad_chains;
  for (std::size_t i = 0; i < net_.chain_errors.size(); ++i) c.chain_errors.by_reason[i] = net_.chain_errors[i];
  for (std::size_t i = 0; i < net_.tx_errors.size(); ++i) c.tx_errors.by_reason[i] = net_.tx_errors[i];
  for (std::size_t i = 0; i < net_.rx_drops.size(); ++i) c.rx_drops.by_reason[i] = net_.rx_drops[i];
  return c;
}

void NetDevice::flush() noexcept {
  notify(kTxQueue);
  notify(kRxQueue);
  (void)guest_memory_lost();  // once per pass whatever else ran: control messages touch the rings too
  serviced_ = false;  // the next pass looks at control and kicks again
}

bool NetDevice::arm() noexcept {
  const bool idle = arm_queues();
  return !guest_memory_lost() && idle;  // lost: disconnected, and the next pass sees no guest
}

void NetDevice::quiet() noexcept {
  // Only the flag (VRING_USED_F_NO_NOTIFY) needs setting: with EVENT_IDX the guest kicks
  // once after the avail_event arm() last wrote, and not again until arm() moves it.
  if (auto* tx = backend_.queue(kTxQueue); tx != nullptr) tx->disable_notification();
}

bool NetDevice::arm_queues() noexcept {
  // [VF2] inside enable_notification: a chain added meanwhile keeps us awake.
  if (auto* tx = backend_.queue(kTxQueue); tx != nullptr && tx->enable_notification()) return false;
  if (rx_waiting_) {
    if (!rewatch_kick()) {
      disconnect("an RX kick eventfd epoll refuses: " + watch_error_);
      return false;  // not asleep: the next pass sees no guest
    }
    if (auto* rx = backend_.queue(kRxQueue); rx != nullptr && rx->enable_notification()) return false;
  }
  return true;
}

}  // namespace vswitch::endpoints::vhost_user
