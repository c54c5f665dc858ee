// The frontends a switch endpoint can have: a TAP device in a network namespace, the
// traffic generator, and a vhost-user front-end (a VM, or DPDK's virtio-user). Each
// keeps its own counter block (vswitch/endpoint_counters.hpp); a TAP keeps none.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "endpoints/generator/test_frame.hpp"
#include "endpoints/tap/tap_device.hpp"
#include "endpoints/vhost_user/backend.hpp"
#include "endpoints/vhost_user/connection.hpp"
#include "endpoints/virtio/net_queues.hpp"
#include "vswitch/endpoint.hpp"
#include "vswitch/frontend_counters.hpp"

namespace vswitch {

// Frames between a TAP device and the switch, virtio-net header included, so checksum
// and TSO offloads pass through untouched.
class TapFrontend final : public Frontend {
 public:
  explicit TapFrontend(endpoints::tap::TapDevice& device) : device_(device) {}
  [[nodiscard]] int fd() const noexcept override { return device_.fd(); }
  RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept override;
  Delivery deliver(const endpoints::virtio::NetHeader& header, std::span<const std::byte> frame,
                   PortId from) noexcept override;
  [[nodiscard]] std::uint64_t read_errors() const noexcept { return read_errors_; }
  [[nodiscard]] std::uint64_t write_errors() const noexcept { return write_errors_; }

 private:
  endpoints::tap::TapDevice& device_;
  std::uint64_t read_errors_ = 0;
  std::uint64_t write_errors_ = 0;
  int last_write_errno_ = 0;
};

// Sends sequence-numbered, checksummed test frames (endpoints/generator/test_frame) at a
// fixed rate (0: as fast as the switch takes them) cycling through a size list, and checks
// every frame it receives: per sending stream, gaps count as lost and steps back as out
// of order; a frame that fails its check counts as bad; anything else as foreign.
class GeneratorFrontend final : public Frontend {
 public:
  struct Config {
    std::uint32_t stream = 0;  // this sender's stream id (unique per endpoint and incarnation)
    MacAddress source;
    MacAddress destination;    // the peer's MAC, or broadcast
    std::vector<std::uint32_t> sizes{64};
    std::uint64_t rate_fps = 0;
    std::uint64_t first_sequence = 0;
    std::uint64_t count = 0;  // frames to send, then stop (0: no limit)
    bool send = true;         // false: only receive and check
    // This receiver restarted: a stream seen for the first time is joined where it is
    // (frames lost while we were down were counted as drops by their senders).
    bool join_streams_midway = false;
  };
  // Counts on from `initial` (a restarted endpoint's predecessor's totals).
  explicit GeneratorFrontend(const Config& config, const GeneratorCounters& initial = {});
  // `config` that sends nothing: only checks what arrives.
  [[nodiscard]] static Config receive_only(MacAddress source);

  [[nodiscard]] int fd() const noexcept override { return -1; }
  RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept override;
  [[nodiscard]] std::optional<std::uint64_t> next_due_ns() const noexcept override;
  Delivery deliver(const endpoints::virtio::NetHeader& header, std::span<const std::byte> frame,
                   PortId from) noexcept override;

  void store_counters(FrontendCounterArea& area) const noexcept override { store_block(counters_, area); }
  [[nodiscard]] const GeneratorCounters& counters() const noexcept { return counters_; }
  // Sending stops (receive() has nothing) while paused; checking goes on.
  void set_paused(bool paused) noexcept { paused_ = paused; }
  [[nodiscard]] std::uint64_t next_sequence() const noexcept { return sequence_; }

 private:
  struct Stream {
    bool seen = false;
    std::uint32_t id = 0;
    endpoints::generator::SequenceTracker tracker;
  };
  Config config_;
  GeneratorCounters counters_;
  std::uint64_t sequence_;
  std::uint64_t period_ns_ = 0;
  std::uint64_t next_due_ns_ = 0;
  std::size_t size_index_ = 0;
  bool paused_ = false;
  std::array<Stream, kMaxEndpoints> streams_{};  // by sending port
  std::uint64_t retired_lost_ = 0;               // losses of streams that were replaced
  std::uint64_t retired_out_of_order_ = 0;
};

// A VM (or DPDK's virtio-user) attached as a vhost-user front-end on a unix socket: this
// endpoint is its virtio-net device. One front-end at a time; when it goes away (or breaks
// the protocol: counted, logged, disconnected) the endpoint forgets its memory and waits
// for it to come back (QEMU reconnect=1), everything else forwarding on.
//
// fd() is an epoll set of the listening socket, the connection and the TX kick eventfd.
// Control messages and kicks are looked at once per loop pass (one epoll_wait(0)); TX
// chains are gathered straight into channel records; RX frames go into the guest's
// buffers; used elements are published and the guest interrupted once per pass (flush()),
// after the fence, as EVENT_IDX or the flags say. A frame for a guest that has posted no
// buffer waits in its channel (kRetryLater, counted once per wait as rx_no_buffers) and
// arm() asks the guest to kick when it posts more.
class VhostUserFrontend final : public Frontend {
 public:
  [[nodiscard]] static sys::Result<std::unique_ptr<VhostUserFrontend>, std::string> create(
      const std::string& socket_path, std::uint16_t max_queue_size, const VhostUserCounters& initial = {});
  ~VhostUserFrontend() override;

  void use_log(EventLog& log) noexcept { log_ = &log; }

  [[nodiscard]] int fd() const noexcept override { return epoll_.get(); }
  RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept override;
  Delivery deliver(const endpoints::virtio::NetHeader& header, std::span<const std::byte> frame,
                   PortId from) noexcept override;
  void flush() noexcept override;
  void store_counters(FrontendCounterArea& area) const noexcept override { store_block(counters(), area); }
  bool arm() noexcept override;
  [[nodiscard]] bool may_defer_delivery() const noexcept override { return true; }

  [[nodiscard]] bool connected() const noexcept { return conn_.has_value(); }
  [[nodiscard]] const endpoints::virtio::NetQueueCounters& queue_counters() const noexcept { return net_; }
  // Totals, continued from the `initial` block it was made with.
  [[nodiscard]] VhostUserCounters counters() const noexcept;

 private:
  VhostUserFrontend(sys::Fd listen, sys::Fd epoll, std::uint16_t max_queue_size, const VhostUserCounters& initial);
  void service() noexcept;        // accept, control messages, kicks
  void disconnect(const std::string& why) noexcept;
  // Adds fd to (on) or removes it from the epoll set; false when adding failed (the
  // reason in watch_error_).
  bool watch(int fd, bool on) noexcept;
  // Watches the current kick descriptors; false when epoll refused one.
  bool rewatch_kick() noexcept;
  void notify(std::uint32_t queue) noexcept;
  Delivery deliver_one(endpoints::virtio::SplitQueue& q, const endpoints::virtio::NetHeader& header,
                       std::span<const std::byte> frame) noexcept;
  Delivery deliver_segmented(endpoints::virtio::SplitQueue& q, const endpoints::virtio::NetHeader& header,
                             std::span<const std::byte> frame) noexcept;
  void say(const std::string& m) noexcept;

  sys::Fd listen_;
  sys::Fd epoll_;
  std::optional<endpoints::vhost_user::Connection> conn_;
  endpoints::vhost_user::Backend backend_;
  endpoints::virtio::RxQueue rx_{true};
  endpoints::virtio::NetQueueCounters net_;  // bad chains, by reason (seeded from `initial`)
  VhostUserTotals totals_;                   // the rest (bad_chains comes from net_)
  EventLog* log_ = nullptr;
  int watched_kick_ = -1;
  std::string watch_error_;
  bool serviced_ = false;  // service() ran in this pass
  bool rx_waiting_ = false;  // a frame waits for the guest to post RX buffers
  int watched_rx_kick_ = -1;
  std::uint16_t tx_used_seen_ = 0, rx_used_seen_ = 0;
  // Software offloads for a guest that did not negotiate them (see deliver()).
  static constexpr std::size_t kMaxSoftwareSegments = 1024;  // gso_size >= 64 for a 64 KiB frame
  std::vector<std::byte> private_;   // a private copy of the record's frame
  std::vector<std::byte> segment_;   // one segment being built
  struct Segmenting {
    const std::byte* record = nullptr;  // identifies the record while it waits in its channel
    std::size_t bytes = 0;
    std::size_t next = 0;               // segments [0, next) are with the guest
  } segmenting_;
};

}  // namespace vswitch
