// TapDevice: a Linux TAP interface opened for a switch endpoint, with the virtio-net
// header in front of every frame (IFF_VNET_HDR, header size 12: struct
// virtio_net_hdr_mrg_rxbuf) and checksum/TSO offloads enabled (TUNSETOFFLOAD), so a
// namespace's 64 KiB TCP segments cross the switch whole, with their offload metadata,
// as one record. Non-blocking: read() says "nothing now" instead of sleeping.
//
// The switch's frames are at most max_frame bytes. TSO is enabled only when max_frame can
// hold a whole TSO segment (kTsoFrameBytes); below that the kernel segments in software
// before the device, so a well-behaved namespace never hands us more than fits. Anything
// longer that still comes (an MTU raised in the namespace) is reported by read() as too
// large, never cut and passed on.
//
// The device is opened in the endpoint's network namespace. If it does not exist it is
// created persistent, so an endpoint that restarts finds it again with its addresses;
// created() tells the owner to remove it (remove_persistent()) when the switch stops.
// A TapSpec with an mtu sets it on the device, new or found.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "shm/sys/error.hpp"
#include "shm/sys/fd.hpp"
#include "endpoints/virtio/net_header.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::endpoints::tap {

inline constexpr std::size_t kTapVnetHeaderBytes = virtio::kNetHeaderBytes;  // IFF_VNET_HDR with TUNSETVNETHDRSZ
// The frame a TSO segment can make: the kernel's GSO limit for a device (65536 bytes,
// GSO_LEGACY_MAX_SIZE, headers included). A smaller max_frame gets no TSO.
inline constexpr std::uint32_t kTsoFrameBytes = 65536;

struct TapSpec {
  std::string ifname;  // 1-15 characters
  std::string netns;   // empty: the caller's namespace
  // Given to a device this call creates (the address the topology declares for the
  // endpoint); an existing device keeps its own.
  std::optional<std::array<std::uint8_t, 6>> mac;
  // The largest frame (without the virtio-net header) the switch takes from the device:
  // TSO4/TSO6 are enabled only if it is at least kTsoFrameBytes.
  std::uint32_t max_frame = kTsoFrameBytes;
  // The device's MTU (SIOCSIFMTU), set whether this call creates the device or finds it:
  // the switch port's. None: the device keeps its own (1500 for a new one).
  std::optional<std::uint32_t> mtu;
};

// What one read() found.
struct TapRead {
  enum class Status : std::uint8_t {
    kFrame,     // `bytes` (header + frame) in the buffer
    kNone,      // nothing now (EAGAIN)
    kTooLarge,  // a frame longer than the buffer: consumed from the device, not returned
  };
  Status status;
  std::size_t bytes = 0;
};

class TapDevice {
 public:
  [[nodiscard]] static sys::Result<TapDevice, std::string> open(const TapSpec& spec);
  // A device opened and configured by open() in another process and handed over (an
  // endpoint program gets its TAP from vswitchd across exec): checks that `fd` is a TAP
  // with the virtio-net header and that its name is spec.ifname; configures nothing, and
  // never deletes the device.
  [[nodiscard]] static sys::Result<TapDevice, std::string> adopt(sys::Fd fd, const TapSpec& spec);

  // One frame with its 12-byte virtio-net header into `buf`. A frame longer than `buf`
  // is consumed from the device and reported as kTooLarge (the kernel would cut it to
  // the buffer; a cut frame is never passed on as if it were whole). num_buffers
  // (bytes 10-11), which the kernel leaves untouched, is zeroed.
  [[nodiscard]] sys::Result<TapRead, sys::SysError> read(std::span<std::byte> buf) noexcept;
  // Whether TUNSETOFFLOAD enabled TSO (spec().max_frame >= kTsoFrameBytes).
  [[nodiscard]] bool tso() const noexcept { return spec_.max_frame >= kTsoFrameBytes; }
  // Writes one frame (header + frame, gathered). Returns false with the error when the
  // kernel refused it (e.g. an invalid header: EINVAL); EAGAIN is reported as an error too.
  [[nodiscard]] sys::Status<sys::SysError> write(std::span<const iovec> parts) noexcept;

  // The device's carrier (TUNSETCARRIER, Linux 5.0): off, the namespace sees NO-CARRIER,
  // its routes through the device go and the kernel sends nothing into it.
  [[nodiscard]] sys::Status<sys::SysError> set_carrier(bool on) noexcept;

  // The device's MTU now (SIOCGIFMTU), and setting it (SIOCSIFMTU), in its namespace, by
  // the name the kernel gives the descriptor held (TUNGETIFF): a reload that changed the
  // port's mtu. Setting needs CAP_NET_ADMIN (the daemon's, not an endpoint's).
  [[nodiscard]] sys::Result<std::uint32_t, std::string> mtu() const;
  [[nodiscard]] sys::Status<std::string> set_mtu(std::uint32_t mtu);

  // Makes the device non-persistent; it disappears when the last descriptor closes.
  [[nodiscard]] sys::Status<sys::SysError> remove_persistent() noexcept;

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] bool created() const noexcept { return created_; }
  [[nodiscard]] const TapSpec& spec() const noexcept { return spec_; }

 private:
  TapDevice(sys::Fd fd, TapSpec spec, bool created) : fd_(std::move(fd)), spec_(std::move(spec)), created_(created) {}
  [[nodiscard]] sys::Result<std::string, std::string> current_name() const;
  sys::Fd fd_;
  TapSpec spec_;
  bool created_ = false;
};

}  // namespace vswitch::endpoints::tap
