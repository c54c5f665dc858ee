#include "vswitch/dataplane/forwarding.hpp"

#include <cstring>

namespace vswitch {

std::optional<EthernetAddresses> read_addresses(std::span<const std::byte> frame) noexcept {
  if (frame.size() < kEthernetHeaderBytes) return std::nullopt;
  EthernetAddresses a;
  std::memcpy(a.destination.bytes.data(), frame.data(), 6);
  std::memcpy(a.source.bytes.data(), frame.data() + 6, 6);
  return a;
}

std::optional<std::uint16_t> vlan_tag(std::span<const std::byte> frame) noexcept {
  if (frame.size() < kEthernetHeaderBytes + kVlanTagBytes) return std::nullopt;
  std::array<std::uint8_t, 4> t{};
  std::memcpy(t.data(), frame.data() + 12, t.size());
  if (t[0] != 0x81 || t[1] != 0x00) return std::nullopt;
  return static_cast<std::uint16_t>(((t[2] & 0x0fu) << 8) | t[3]);
}

Decision Forwarder::from_frontend(std::span<const std::byte> frame, std::uint64_t now_ms, std::uint16_t vlan) noexcept {
  const auto addr = read_addresses(frame);
  if (!addr) return drop(DropReason::kRuntFrame);
  if (addr->source.is_multicast()) return drop(DropReason::kGroupSourceMac);
  if (config_.port_security && (!config_.own_mac || addr->source != *config_.own_mac))
    return drop(DropReason::kSpoofedSource);
  if (table_.learn(addr->source, config_.self, now_ms, vlan) == Learn::kRefusedStatic)
    return drop(DropReason::kStaticMacConflict);
  if (addr->destination.is_multicast()) return Decision{Decision::Kind::kFlood};
  const auto port = table_.lookup(addr->destination, now_ms, vlan);
  if (!port) return Decision{Decision::Kind::kFlood};
  if (*port == config_.self) return drop(DropReason::kHairpin);
  return Decision{Decision::Kind::kUnicast, *port};
}

std::optional<DropReason> Forwarder::from_peer(std::span<const std::byte> frame, PortId peer, std::uint64_t now_ms,
                                               std::uint16_t vlan) noexcept {
  const auto addr = read_addresses(frame);
  if (!addr) {
    drops_.count(DropReason::kRuntFrame);
    return DropReason::kRuntFrame;
  }
  if (addr->source.is_multicast()) {
    drops_.count(DropReason::kGroupSourceMac);
    return DropReason::kGroupSourceMac;
  }
  if (table_.learn(addr->source, peer, now_ms, vlan) == Learn::kRefusedStatic) {
    drops_.count(DropReason::kStaticMacConflict);
    return DropReason::kStaticMacConflict;
  }
  return std::nullopt;
}

}  // namespace vswitch
