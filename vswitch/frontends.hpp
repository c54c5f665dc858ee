// The frontends a switch endpoint can have: a TAP device in a network namespace, the
// traffic generator, and a vhost-user front-end (a VM, or DPDK's virtio-user). Each
// keeps its own counter block (vswitch/frontend_counters.hpp); a TAP keeps none.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "endpoints/generator/test_frame.hpp"
#include "endpoints/tap/tap_device.hpp"
#include "endpoints/vhost_user/net_device.hpp"
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
  Delivery deliver(const endpoints::virtio::NetHeader& header, std::span<const std::byte> frame, PortId from,
                   std::uint64_t& resume) noexcept override;
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
  Delivery deliver(const endpoints::virtio::NetHeader& header, std::span<const std::byte> frame, PortId from,
                   std::uint64_t& resume) noexcept override;

  void store_counters(FrontendCounterArea& area) const noexcept override { sys::store_block(counters_, area); }
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

// A VM (or DPDK's virtio-user) attached as a vhost-user front-end: the run loop's side
// of the virtio-net device in endpoints/vhost_user/net_device, which does all the work
// (see there). A frame for a guest that has posted no buffer waits in its channel
// (kRetryLater) with the device's resume token, and arm() asks the guest to kick when it
// posts more.
class VhostUserFrontend final : public Frontend {
 public:
  using Device = endpoints::vhost_user::NetDevice;
  explicit VhostUserFrontend(std::unique_ptr<Device> device) : device_(std::move(device)) {}

  // The device's connects, disconnects and their reasons go to `log`.
  void use_log(EventLog& log) {
    device_->set_log([&log](const std::string& m) { log.post(m); });
  }

  [[nodiscard]] int fd() const noexcept override { return device_->fd(); }
  RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept override;
  Delivery deliver(const endpoints::virtio::NetHeader& header, std::span<const std::byte> frame, PortId from,
                   std::uint64_t& resume) noexcept override;
  void flush() noexcept override { device_->flush(); }
  void store_counters(FrontendCounterArea& area) const noexcept override {
    sys::store_block(device_->counters(), area);
  }
  bool arm() noexcept override { return device_->arm(); }
  [[nodiscard]] bool may_defer_delivery() const noexcept override { return true; }

  [[nodiscard]] Device& device() noexcept { return *device_; }

 private:
  std::unique_ptr<Device> device_;
};

}  // namespace vswitch
