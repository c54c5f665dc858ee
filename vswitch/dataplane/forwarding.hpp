// Forwarding: what one endpoint does with a frame, given its MAC table.
//
// Frames from the endpoint's own frontend (its VM, namespace or generator) go out:
//   runt (< 14 bytes)                         -> drop kRuntFrame
//   group (multicast/broadcast) source        -> drop kGroupSourceMac
//   port_security and source != own MAC       -> drop kSpoofedSource
//   source is a static MAC of another port    -> drop kStaticMacConflict
//   destination known behind another port     -> unicast to it
//   destination known behind this port        -> drop kHairpin
//   unknown unicast, broadcast, multicast     -> flood to every other port
// Frames arriving from a peer's channel teach the table that their source lives behind
// that peer; a group source or a static MAC from the wrong peer drops the frame (a peer
// process is not trusted to have dropped it already).
//
// A group source is never a station's own address (the I/G bit marks a destination
// group): such a frame is forged or broken, and forwarding it would let one port make
// every other port's receivers see a sender that cannot be answered or learned.
// A source address the MAC table refuses for room (the table, or its port's share, is
// full) does not drop the frame: it is forwarded unlearned, and the refusal is counted.
//
// Every drop has a DropReason, and DropReason indexes the counters, so a drop that is not
// counted cannot be written.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "vswitch/dataplane/mac_table.hpp"
#include "vswitch/observability/drop_reason.hpp"

namespace vswitch {

struct Decision {
  enum class Kind : std::uint8_t { kUnicast, kFlood, kDrop };
  Kind kind;
  PortId port = 0;                           // kUnicast
  DropReason reason = DropReason::kCount;    // kDrop
};

inline constexpr std::size_t kEthernetHeaderBytes = 14;
inline constexpr std::size_t kVlanTagBytes = 4;  // an IEEE 802.1Q tag: TPID 0x8100, PCP/DEI/VID

// The two addresses at the front of an Ethernet frame, read once.
struct EthernetAddresses {
  MacAddress destination;
  MacAddress source;
};
[[nodiscard]] std::optional<EthernetAddresses> read_addresses(std::span<const std::byte> frame) noexcept;
// The VID of the IEEE 802.1Q tag after the addresses (TPID 0x8100), or nothing for a
// frame without one (an 802.1ad S-tag, 0x88a8, is not a VLAN tag here). Read once.
[[nodiscard]] std::optional<std::uint16_t> vlan_tag(std::span<const std::byte> frame) noexcept;

class Forwarder {
 public:
  struct Config {
    PortId self = 0;
    std::optional<MacAddress> own_mac;  // the endpoint's configured MAC, if any
    bool port_security = false;         // drop frames whose source is not own_mac
  };
  Forwarder(const Config& config, MacTable& table) noexcept : config_(config), table_(table) {}

  // A frame from this endpoint's frontend, in VLAN `vlan` (0: the VLAN-unaware ports'):
  // where it goes. Learns its source in that VLAN behind self. A flood goes to the ports
  // of that VLAN only (the caller's to choose).
  Decision from_frontend(std::span<const std::byte> frame, std::uint64_t now_ms, std::uint16_t vlan = 0) noexcept;
  // A frame in VLAN `vlan` that arrived on the channel from `peer`: learns its source in
  // that VLAN behind `peer`. Returns a drop reason if the frame must not be delivered.
  std::optional<DropReason> from_peer(std::span<const std::byte> frame, PortId peer, std::uint64_t now_ms,
                                      std::uint16_t vlan = 0) noexcept;

  [[nodiscard]] const DropCounters& drops() const noexcept { return drops_; }
  DropCounters& drops() noexcept { return drops_; }

 private:
  Decision drop(DropReason r) noexcept {
    drops_.count(r);
    return Decision{Decision::Kind::kDrop, 0, r};
  }
  Config config_;
  MacTable& table_;
  DropCounters drops_;
};

}  // namespace vswitch
