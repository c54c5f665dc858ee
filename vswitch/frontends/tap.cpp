#include "vswitch/frontends/tap.hpp"

#include <sys/uio.h>

#include <array>

namespace vswitch {

namespace virtio = endpoints::virtio;

Frontend::RxResult TapFrontend::receive(std::span<std::byte> buf, std::uint64_t) noexcept {
  auto r = device_.read(buf);
  if (!r) {
    ++read_errors_;
    return {Rx::kError};
  }
  switch (r.value().status) {
    case endpoints::tap::TapRead::Status::kNone: return {Rx::kNone};
    case endpoints::tap::TapRead::Status::kTooLarge: return {Rx::kTooLarge};
    case endpoints::tap::TapRead::Status::kFrame: break;
  }
  return {Rx::kFrame, r.value().bytes};
}

std::string TapFrontend::set_link(bool up) noexcept {
  if (auto st = device_.set_carrier(up); !st) return st.error().message();
  return {};
}

Frontend::Delivery TapFrontend::deliver(const virtio::CheckedNetHeader& header, std::span<const std::byte> frame,
                                       FrameAddresses addresses, PortId, std::uint64_t&) noexcept {
  // The header we hand the kernel is the validated copy, re-encoded, never the bytes in
  // shared memory, and so are the addresses (the loop's checked copy); the rest of the
  // frame goes from shared memory to the kernel in one copy.
  std::array<std::byte, virtio::kNetHeaderBytes> h{};
  virtio::NetHeader out = header.get();
  out.num_buffers = 0;
  virtio::write(out, std::span<std::byte, virtio::kNetHeaderBytes>(h));
  const std::span<const std::byte> rest = frame.subspan(std::min(frame.size(), addresses.size()));
  const iovec parts[3] = {{h.data(), h.size()},
                          {const_cast<std::byte*>(addresses.data()), addresses.size()},
                          {const_cast<std::byte*>(rest.data()), rest.size()}};
  if (auto s = device_.write(parts); !s) {
    ++write_errors_;
    last_write_errno_ = s.error().err;
    return Delivery::kRefused;
  }
  return Delivery::kDelivered;
}

}  // namespace vswitch
