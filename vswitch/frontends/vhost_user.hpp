// The vhost-user frontend: the run loop's adapter to the virtio-net device of
// endpoints/vhost_user/net_device, which keeps its own counter block
// (endpoints/vhost_user/net_device_counters.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "endpoints/vhost_user/net_device.hpp"
#include "vswitch/dataplane/endpoint.hpp"
#include "vswitch/observability/event_log.hpp"
#include "vswitch/observability/frontend_counters.hpp"

namespace vswitch {

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
  Delivery deliver(const endpoints::virtio::CheckedNetHeader& header, std::span<const std::byte> frame,
                   FrameAddresses addresses, PortId from, std::uint64_t& resume) noexcept override;
  void flush() noexcept override { device_->flush(); }
  // While a restarted device waits for its guest (NetDevice::await_reconnect), the loop
  // wakes when the wait ends, to drop what still waits for a guest that did not come.
  [[nodiscard]] std::optional<std::uint64_t> next_due_ns() const noexcept override {
    return device_->reconnect_deadline();
  }
  void begin_pass() noexcept override { device_->begin_pass(); }
  // A guest's used index is the commit point QEMU restarts its receive queue from.
  [[nodiscard]] bool journals_deliveries() const noexcept override { return true; }
  [[nodiscard]] std::optional<std::uint16_t> delivery_mark() noexcept override { return device_->rx_mark(); }
  void commit_deliveries() noexcept override { device_->publish_rx(); }
  std::optional<std::uint16_t> take_delivery_restart() noexcept override { return device_->take_rx_start(); }
  void store_counters(FrontendCounterArea& area) const noexcept override {
    sys::store_block(device_->counters(), area);
  }
  bool arm() noexcept override { return device_->arm(); }
  void quiet() noexcept override { device_->quiet(); }
  // Down: the front-end is disconnected and refused until up (see NetDevice::set_link).
  std::string set_link(bool up) noexcept override {
    device_->set_link(up);
    return {};
  }
  [[nodiscard]] bool may_defer_delivery() const noexcept override { return true; }

  [[nodiscard]] Device& device() noexcept { return *device_; }

 private:
  std::unique_ptr<Device> device_;
};

}  // namespace vswitch
