// Why a frame was dropped: every drop in the switch has one of these reasons, counted per
// endpoint in its stats slice (vswitchctl names them by to_string()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "shm/sys/counters.hpp"

namespace vswitch {

enum class DropReason : std::uint8_t {
  kRuntFrame,          // shorter than an Ethernet header
  kSpoofedSource,      // port security: source MAC is not the endpoint's own
  kStaticMacConflict,  // source claims a static MAC that belongs to another port
  kHairpin,            // destination lives behind the port the frame came from
  kFloodPeerFull,      // a flooded copy found the peer's channel full
  kPeerStalled,        // the peer has not consumed for the stall timeout
  kRingCorrupt,        // a corrupt record was dropped by the ring consumer
  kFrameTooLarge,      // larger than the fabric's max frame (e.g. read from a TAP: taken whole, never cut and sent)
  kBadNetHeader,       // a record whose virtio-net header is truncated or invalid
  kFrontendError,      // the frontend refused the frame (e.g. a TAP write failed)
  kEndpointStopped,    // held for a full channel when the endpoint was stopped
  kGuestNotReady,      // a VM endpoint with no guest attached, or its RX queue not running,
                       // or a frontend that took no frame for the stall timeout (no RX buffer)
  kGuestBufferTooSmall,// the guest's receive buffers cannot hold the frame (even all of them)
  kOffloadUnsupported, // an offload the guest did not accept and software cannot complete
  kGroupSourceMac,     // source MAC is a group (multicast or broadcast) address: no station sends from one
  kPeerFull,           // unicast: the peer's channel stayed full past the short hold, or a frame
                       // for it was already held (the sender never waits longer for one peer)
  kMtuExceeded,        // a frame that is not GSO, longer than the port's mtu + 18 (Ethernet
                       // header and a VLAN tag), from its frontend or on its way to it
  kVlanNotAllowed,     // a frame of a VLAN the port does not carry (a tag its trunk does not
                       // list, an untagged or priority-tagged frame on a trunk without a
                       // vlan, a second tag inside, or a peer's record of a VLAN this
                       // port is not in)
  kLinkDown,           // the port's link is administratively down (vswitchctl link): a frame
                       // its frontend still handed over, or one for it
  kPortDisabled,       // to or from a port that is disabled (enabled = false, applied by a
                       // reload): sent to it after it was turned off (found in its
                       // channels when it stops or starts again), held for it then, or
                       // sent by it before its peers saw it go
  kCount,
};
std::string_view to_string(DropReason r);

// Room for drop reasons added later without moving what follows in the stats region.
inline constexpr std::size_t kDropSlots = 32;
using DropCounters = sys::ReasonCounts<DropReason, kDropSlots>;

}  // namespace vswitch
