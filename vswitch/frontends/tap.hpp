// The TAP frontend: a TAP device in a network namespace (the device is the daemon's, so a
// restarted endpoint finds the same one). A TAP keeps no counter block of its own.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "endpoints/tap/tap_device.hpp"
#include "vswitch/dataplane/endpoint.hpp"

namespace vswitch {

// Frames between a TAP device and the switch, virtio-net header included, so checksum
// and TSO offloads pass through untouched.
class TapFrontend final : public Frontend {
 public:
  explicit TapFrontend(endpoints::tap::TapDevice& device) : device_(device) {}
  [[nodiscard]] int fd() const noexcept override { return device_.fd(); }
  RxResult receive(std::span<std::byte> buf, std::uint64_t now_ns) noexcept override;
  Delivery deliver(const endpoints::virtio::CheckedNetHeader& header, std::span<const std::byte> frame,
                   FrameAddresses addresses, PortId from, std::uint64_t& resume) noexcept override;
  // The TAP's carrier follows the port's link.
  std::string set_link(bool up) noexcept override;
  [[nodiscard]] std::uint64_t read_errors() const noexcept { return read_errors_; }
  [[nodiscard]] std::uint64_t write_errors() const noexcept { return write_errors_; }

 private:
  endpoints::tap::TapDevice& device_;
  std::uint64_t read_errors_ = 0;
  std::uint64_t write_errors_ = 0;
  int last_write_errno_ = 0;
};

}  // namespace vswitch
