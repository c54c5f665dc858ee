// pcapng: the blocks `vswitchctl capture` writes, as the format defines them ("PCAP Next
// Generation (pcapng) Capture File Format", IETF draft-ietf-opsawg-pcapng): one Section
// Header Block, one Interface Description Block for the endpoint, then one Enhanced Packet
// Block per frame. Little-endian (the byte-order magic tells readers), every block and
// option padded to 32 bits, timestamps in nanoseconds (if_tsresol = 9).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace vswitch::pcapng {

inline constexpr std::uint32_t kSectionHeaderType = 0x0A0D0D0A;
inline constexpr std::uint32_t kInterfaceDescriptionType = 1;
inline constexpr std::uint32_t kEnhancedPacketType = 6;
inline constexpr std::uint32_t kByteOrderMagic = 0x1A2B3C4D;
inline constexpr std::uint16_t kLinkTypeEthernet = 1;

// epb_flags bits 0-1: the direction, from the interface's side.
enum class Direction : std::uint32_t { kUnknown = 0, kInbound = 1, kOutbound = 2 };

// Appends a Section Header Block naming the writing application (shb_userappl).
void append_section_header(std::vector<std::byte>& out, std::string_view application);
// Appends an Interface Description Block: Ethernet, `snaplen`, if_name, if_description
// (empty: left out) and if_tsresol = 9.
void append_interface(std::vector<std::byte>& out, std::uint32_t snaplen, std::string_view name,
                      std::string_view description);
// Appends an Enhanced Packet Block on interface 0: `data` (the captured bytes) of a frame
// `original_bytes` long, stamped `unix_ns` (nanoseconds since 1970), with epb_flags.
void append_packet(std::vector<std::byte>& out, std::uint64_t unix_ns, std::span<const std::byte> data,
                   std::uint32_t original_bytes, Direction direction);

}  // namespace vswitch::pcapng
