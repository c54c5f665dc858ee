// Forwarding: what one endpoint does with a frame, given its MAC table.
//
// Frames from the endpoint's own frontend (its VM, namespace or generator) go out:
//   runt (< 14 bytes)                         -> drop kRuntFrame
//   port_security and source != own MAC       -> drop kSpoofedSource
//   source is a static MAC of another port    -> drop kStaticMacConflict
//   destination known behind another port     -> unicast to it
//   destination known behind this port        -> drop kHairpin
//   unknown unicast, broadcast, multicast     -> flood to every other port
// Frames arriving from a peer's channel teach the table that their source lives behind
// that peer (never from group sources; a static MAC from the wrong peer drops the frame).
//
// Every drop has a DropReason, and DropReason indexes the counters, so a drop that is not
// counted cannot be written.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "shm/sys/counters.hpp"
#include "vswitch/mac_table.hpp"

namespace vswitch {

enum class DropReason : std::uint8_t {
  kRuntFrame,          // shorter than an Ethernet header
  kSpoofedSource,      // port security: source MAC is not the endpoint's own
  kStaticMacConflict,  // source claims a static MAC that belongs to another port
  kHairpin,            // destination lives behind the port the frame came from
  kFloodPeerFull,      // a flooded copy found the peer's channel full
  kPeerStalled,        // the peer has not consumed for the stall timeout
  kRingCorrupt,        // a corrupt record was dropped by the ring consumer
  kFrameTooLarge,      // larger than the fabric's max frame
  kBadNetHeader,       // a record whose virtio-net header is truncated or invalid
  kFrontendError,      // the frontend refused the frame (e.g. a TAP write failed)
  kEndpointStopped,    // held for a full channel when the endpoint was stopped
  kGuestNotReady,      // a VM endpoint with no guest attached, or its RX queue not running
  kGuestBufferTooSmall,// the guest's receive buffers cannot hold the frame (even all of them)
  kOffloadUnsupported, // an offload the guest did not accept and software cannot complete
  kCount,
};
std::string_view to_string(DropReason r);

// Room for drop reasons added later without moving what follows in the stats region.
inline constexpr std::size_t kDropSlots = 16;
using DropCounters = sys::ReasonCounts<DropReason, kDropSlots>;

struct Decision {
  enum class Kind : std::uint8_t { kUnicast, kFlood, kDrop };
  Kind kind;
  PortId port = 0;                           // kUnicast
  DropReason reason = DropReason::kCount;    // kDrop
};

inline constexpr std::size_t kEthernetHeaderBytes = 14;

// The two addresses at the front of an Ethernet frame, read once.
struct EthernetAddresses {
  MacAddress destination;
  MacAddress source;
};
[[nodiscard]] std::optional<EthernetAddresses> read_addresses(std::span<const std::byte> frame) noexcept;

class Forwarder {
 public:
  struct Config {
    PortId self = 0;
    std::optional<MacAddress> own_mac;  // the endpoint's configured MAC, if any
    bool port_security = false;         // drop frames whose source is not own_mac
  };
  Forwarder(const Config& config, MacTable& table) noexcept : config_(config), table_(table) {}

  // A frame from this endpoint's frontend: where it goes. Learns its source behind self.
  Decision from_frontend(std::span<const std::byte> frame, std::uint64_t now_ms) noexcept;
  // A frame that arrived on the channel from `peer`: learns its source behind `peer`.
  // Returns a drop reason if the frame must not be delivered.
  std::optional<DropReason> from_peer(std::span<const std::byte> frame, PortId peer,
                                      std::uint64_t now_ms) noexcept;

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
