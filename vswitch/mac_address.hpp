// MacAddress: six bytes, parsed from and printed as "02:00:00:00:00:01".
#pragma once

#include <array>
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
  friend bool operator==(const MacAddress&, const MacAddress&) = default;
};

}  // namespace vswitch
