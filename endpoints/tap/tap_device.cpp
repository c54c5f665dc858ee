#include "endpoints/tap/tap_device.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "endpoints/tap/netns.hpp"

namespace vswitch::endpoints::tap {
namespace {

std::string fail(const TapSpec& spec, const std::string& what, int err) {
  std::string where = spec.netns.empty() ? "" : " in netns \"" + spec.netns + "\"";
  std::string m = "tap \"" + spec.ifname + "\"" + where + ": " + what + ": " + std::strerror(err);
  if (err == EPERM || err == EACCES) m += " (needs CAP_NET_ADMIN: run as root)";
  if (err == ENOENT && what.find("/dev/net/tun") != std::string::npos) m += " (load the tun module)";
  return m;
}

bool device_exists(const std::string& ifname) {
  sys::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return false;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  return ::ioctl(s.get(), SIOCGIFINDEX, &ifr) == 0;
}

// SIOCSIFMTU on the device, from the namespace the caller is in (the device's).
sys::Status<std::string> apply_mtu(const TapSpec& spec, std::uint32_t mtu) {
  sys::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq m{};
  std::memcpy(m.ifr_name, spec.ifname.data(), spec.ifname.size());
  m.ifr_mtu = static_cast<int>(mtu);
  if (!s.valid() || ::ioctl(s.get(), SIOCSIFMTU, &m) != 0) return sys::Unexpected(fail(spec, "SIOCSIFMTU", errno));
  return {};
}

}  // namespace

sys::Result<TapDevice, std::string> TapDevice::adopt(sys::Fd fd, const TapSpec& spec) {
  // TUNGETIFF names the device behind the descriptor and its flags: it must be the TAP
  // the topology names, with the 12-byte virtio-net header open() set up.
  ifreq ifr{};
  if (!fd.valid() || ::ioctl(fd.get(), TUNGETIFF, &ifr) != 0)
    return sys::Unexpected(fail(spec, "the handed-over descriptor is not a tap device (TUNGETIFF)", fd.valid() ? errno : EBADF));
  const std::string name(ifr.ifr_name, ::strnlen(ifr.ifr_name, sizeof ifr.ifr_name));
  const int want = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (name != spec.ifname || (ifr.ifr_flags & want) != want)
    return sys::Unexpected("tap \"" + spec.ifname + "\": the handed-over descriptor is \"" + name +
                           "\" or lacks IFF_TAP, IFF_NO_PI or IFF_VNET_HDR");
  int hdr = 0;
  if (::ioctl(fd.get(), TUNGETVNETHDRSZ, &hdr) != 0) return sys::Unexpected(fail(spec, "TUNGETVNETHDRSZ", errno));
  if (hdr != 12)
    return sys::Unexpected("tap \"" + spec.ifname + "\": the handed-over descriptor's virtio-net header is " +
                           std::to_string(hdr) + " bytes, not 12");
  return TapDevice(std::move(fd), spec, false);
}

sys::Result<TapDevice, std::string> TapDevice::open(const TapSpec& spec) {
  if (spec.ifname.empty() || spec.ifname.size() >= IFNAMSIZ)
    return sys::Unexpected("tap \"" + spec.ifname + "\": name must be 1-15 characters");
  auto scope = NetnsScope::enter(spec.netns);
  if (!scope) return sys::Unexpected(scope.error());

  const bool existed = device_exists(spec.ifname);
  sys::Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return sys::Unexpected(fail(spec, "open /dev/net/tun", errno));
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, spec.ifname.data(), spec.ifname.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    const int err = errno;
    return sys::Unexpected(fail(spec, existed ? "attach (TUNSETIFF; is it a tap device, and free?)" : "create (TUNSETIFF)", err));
  }
  int hdr = static_cast<int>(kTapVnetHeaderBytes);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) != 0) return sys::Unexpected(fail(spec, "TUNSETVNETHDRSZ", errno));
  // What the kernel may hand us: partial checksums, and TSO segments up to 64 KiB only
  // when a frame that large fits the switch's max_frame; otherwise the kernel segments
  // in software first, so it never hands us more than fits. Frames written to the device
  // may carry the same; the kernel validates their headers.
  unsigned offloads = TUN_F_CSUM;
  if (spec.max_frame >= kTsoFrameBytes) offloads |= TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
  if (::ioctl(fd.get(), TUNSETOFFLOAD, offloads) != 0) return sys::Unexpected(fail(spec, "TUNSETOFFLOAD", errno));
  // A device made persistent here and then not used goes again with the descriptor (no
  // failed start or refused reload leaves one behind).
  const auto failed = [&](const std::string& why) {
    if (!existed) (void)::ioctl(fd.get(), TUNSETPERSIST, 0);
    return sys::Unexpected(why);
  };
  if (!existed) {
    if (::ioctl(fd.get(), TUNSETPERSIST, 1) != 0) return sys::Unexpected(fail(spec, "TUNSETPERSIST", errno));
    // A device we created is ours to bring up; an existing one keeps the state its owner gave it.
    sys::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq up{};
    std::memcpy(up.ifr_name, spec.ifname.data(), spec.ifname.size());
    if (!s.valid() || ::ioctl(s.get(), SIOCGIFFLAGS, &up) != 0) return failed(fail(spec, "SIOCGIFFLAGS", errno));
    if (spec.mac) {
      ifreq hw{};
      std::memcpy(hw.ifr_name, spec.ifname.data(), spec.ifname.size());
      hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
      std::memcpy(hw.ifr_hwaddr.sa_data, spec.mac->data(), 6);
      if (::ioctl(s.get(), SIOCSIFHWADDR, &hw) != 0) return failed(fail(spec, "SIOCSIFHWADDR", errno));
    }
    up.ifr_flags = static_cast<short>(up.ifr_flags | IFF_UP);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &up) != 0) return failed(fail(spec, "SIOCSIFFLAGS (up)", errno));
  }
  // The port's MTU is the topology's, on a device it found as on one it made: the
  // namespace's stack then never sends the switch a frame the port would drop.
  if (spec.mtu)
    if (auto st = apply_mtu(spec, *spec.mtu); !st) return failed(st.error());
  return TapDevice(std::move(fd), spec, !existed);
}

sys::Result<std::string, std::string> TapDevice::current_name() const {
  ifreq ifr{};
  if (::ioctl(fd_.get(), TUNGETIFF, &ifr) != 0) return sys::Unexpected(fail(spec_, "TUNGETIFF", errno));
  return std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
}

sys::Result<std::uint32_t, std::string> TapDevice::mtu() const {
  auto name = current_name();
  if (!name) return sys::Unexpected(name.error());
  auto scope = NetnsScope::enter(spec_.netns);
  if (!scope) return sys::Unexpected(scope.error());
  sys::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq m{};
  std::memcpy(m.ifr_name, name.value().data(), name.value().size());
  if (!s.valid() || ::ioctl(s.get(), SIOCGIFMTU, &m) != 0) return sys::Unexpected(fail(spec_, "SIOCGIFMTU", errno));
  return static_cast<std::uint32_t>(m.ifr_mtu);
}

sys::Status<std::string> TapDevice::set_mtu(std::uint32_t mtu) {
  // By the name the device has now (TUNGETIFF on the descriptor held): whoever is in its
  // namespace may have renamed it, and another device may carry the old name.
  auto name = current_name();
  if (!name) return sys::Unexpected(name.error());
  TapSpec now = spec_;
  now.ifname = name.value();
  auto scope = NetnsScope::enter(spec_.netns);
  if (!scope) return sys::Unexpected(scope.error());
  if (auto st = apply_mtu(now, mtu); !st) return st;
  spec_.mtu = mtu;
  return {};
}

sys::Result<TapRead, sys::SysError> TapDevice::read(std::span<std::byte> buf) noexcept {
  // One spare byte after the buffer: a frame that reaches it did not fit. (tun returns the
  // frame's whole length even when it copied only what fit; either way the count is
  // larger than the buffer.)
  std::byte spare[1];
  iovec parts[2] = {{buf.data(), buf.size()}, {spare, sizeof spare}};
  for (;;) {
    const ssize_t n = ::readv(fd_.get(), parts, 2);
    if (n >= 0) {
      const auto len = static_cast<std::size_t>(n);
      if (len > buf.size()) return TapRead{TapRead::Status::kTooLarge, len};
      if (len >= kTapVnetHeaderBytes) std::memset(buf.data() + 10, 0, 2);
      return TapRead{TapRead::Status::kFrame, len};
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return TapRead{TapRead::Status::kNone, 0};
    return sys::Unexpected(sys::SysError{"read(tap)", errno});
  }
}

sys::Status<sys::SysError> TapDevice::write(std::span<const iovec> parts) noexcept {
  for (;;) {
    if (::writev(fd_.get(), parts.data(), static_cast<int>(parts.size())) >= 0) return {};
    if (errno == EINTR) continue;
    return sys::Unexpected(sys::SysError{"writev(tap)", errno});
  }
}

sys::Status<sys::SysError> TapDevice::set_carrier(bool on) noexcept {
  int carrier = on ? 1 : 0;
  if (::ioctl(fd_.get(), TUNSETCARRIER, &carrier) != 0)
    return sys::Unexpected(sys::SysError{on ? "TUNSETCARRIER 1" : "TUNSETCARRIER 0", errno});
  return {};
}

sys::Status<sys::SysError> TapDevice::remove_persistent() noexcept {
  if (::ioctl(fd_.get(), TUNSETPERSIST, 0) != 0) return sys::Unexpected(sys::SysError{"TUNSETPERSIST 0", errno});
  created_ = false;
  return {};
}

}  // namespace vswitch::endpoints::tap
