#include "vswitch/observability/drop_reason.hpp"

namespace vswitch {

std::string_view to_string(DropReason r) {
  switch (r) {
    case DropReason::kRuntFrame: return "runt_frame";
    case DropReason::kSpoofedSource: return "spoofed_source";
    case DropReason::kStaticMacConflict: return "static_mac_conflict";
    case DropReason::kHairpin: return "hairpin";
    case DropReason::kFloodPeerFull: return "flood_peer_full";
    case DropReason::kPeerStalled: return "peer_stalled";
    case DropReason::kRingCorrupt: return "ring_corrupt";
    case DropReason::kFrameTooLarge: return "frame_too_large";
    case DropReason::kBadNetHeader: return "bad_net_header";
    case DropReason::kFrontendError: return "frontend_error";
    case DropReason::kEndpointStopped: return "endpoint_stopped";
    case DropReason::kGuestNotReady: return "guest_not_ready";
    case DropReason::kGuestBufferTooSmall: return "guest_buffer_too_small";
    case DropReason::kOffloadUnsupported: return "offload_unsupported";
    case DropReason::kGroupSourceMac: return "group_source_mac";
    case DropReason::kPeerFull: return "peer_full";
    case DropReason::kMtuExceeded: return "mtu_exceeded";
    case DropReason::kVlanNotAllowed: return "vlan_not_allowed";
    case DropReason::kLinkDown: return "link_down";
    case DropReason::kPortDisabled: return "port_disabled";
    case DropReason::kCount: break;
  }
  return "unknown";
}

}  // namespace vswitch
