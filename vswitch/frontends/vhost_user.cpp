#include "vswitch/frontends/vhost_user.hpp"

namespace vswitch {

Frontend::RxResult VhostUserFrontend::receive(std::span<std::byte> buf, std::uint64_t) noexcept {
  const auto bytes = device_->receive(buf);
  if (!bytes) return {Rx::kNone};
  return {Rx::kFrame, *bytes};
}

Frontend::Delivery VhostUserFrontend::deliver(const endpoints::virtio::CheckedNetHeader& header,
                                             std::span<const std::byte> frame, FrameAddresses addresses,
                                             PortId, std::uint64_t& resume) noexcept {
  auto token = endpoints::vhost_user::ResumeToken::unpack(resume);
  const Device::Delivery d = device_->deliver(header, frame, token, addresses);
  resume = token.pack();
  switch (d) {
    case Device::Delivery::kDelivered:
      return Delivery::kDelivered;
    case Device::Delivery::kWaitForBuffers:
      return Delivery::kRetryLater;
    case Device::Delivery::kNoGuest:
      return Delivery::kNoGuest;
    case Device::Delivery::kTooLarge:
      return Delivery::kTooLarge;
    case Device::Delivery::kUnsupported:
      return Delivery::kUnsupported;
    case Device::Delivery::kMtuExceeded:
      return Delivery::kMtuExceeded;
  }
  return Delivery::kRefused;
}

}  // namespace vswitch
