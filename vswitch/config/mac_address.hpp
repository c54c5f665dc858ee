// MacAddress: six bytes, parsed from and printed as "02:00:00:00:00:01".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vswitch {

struct MacAddress {
  std::array<std::uint8_t, 6> bytes{};

  // Accepts exactly six colon-separated pairs of hex digits (either case).
  [[nodiscard]] static std::optional<MacAddress> parse(std::string_view text);
  [[nodiscard]] std::string str() const;
  // Group bit set: broadcast and multicast. Never a valid source or static entry.
  [[nodiscard]] bool is_multicast() const noexcept { return (bytes[0] & 1) != 0; }
  [[nodiscard]] bool is_zero() const noexcept {
    for (auto b : bytes)
      if (b != 0) return false;
    return true;
  }
  // The address as a 48-bit number, first byte in the lowest 8 bits (the FDB snapshot's
  // word, the MAC table's hash input), and back (bits 48-63 are ignored).
  [[nodiscard]] constexpr std::uint64_t bits() const noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) v |= std::uint64_t{bytes[i]} << (8 * i);
    return v;
  }
  [[nodiscard]] static constexpr MacAddress from_bits(std::uint64_t v) noexcept {
    MacAddress m;
    for (std::size_t i = 0; i < m.bytes.size(); ++i) m.bytes[i] = static_cast<std::uint8_t>(v >> (8 * i));
    return m;
  }
  friend bool operator==(const MacAddress&, const MacAddress&) = default;
};

}  // namespace vswitch
