#include "vswitch/observability/pcapng.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

namespace vswitch::pcapng {
namespace {

constexpr std::uint16_t kOptEnd = 0;
constexpr std::uint16_t kShbUserAppl = 4;
constexpr std::uint16_t kIfName = 2;
constexpr std::uint16_t kIfDescription = 3;
constexpr std::uint16_t kIfTsresol = 9;
constexpr std::uint16_t kEpbFlags = 2;

constexpr std::size_t pad4(std::size_t n) noexcept { return (n + 3) & ~std::size_t{3}; }

template <typename T>
void put(std::vector<std::byte>& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);  // little-endian hosts only (static_assert below)
}
void put_bytes(std::vector<std::byte>& out, const void* p, std::size_t n) {
  const std::size_t at = out.size();
  out.resize(at + pad4(n));  // the padding is zero (resize value-initialises)
  if (n != 0) std::memcpy(out.data() + at, p, n);
}
void put_option(std::vector<std::byte>& out, std::uint16_t code, const void* p, std::size_t n) {
  put<std::uint16_t>(out, code);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(n));
  put_bytes(out, p, n);
}
void put_string_option(std::vector<std::byte>& out, std::uint16_t code, std::string_view s) {
  // An option's length is 16 bits; names and descriptions here are far shorter.
  if (!s.empty()) put_option(out, code, s.data(), std::min<std::size_t>(s.size(), 0xfff0));
}
void put_end(std::vector<std::byte>& out) {
  put<std::uint16_t>(out, kOptEnd);
  put<std::uint16_t>(out, 0);
}

// Starts a block (type, total length to be filled in); returns where it starts.
std::size_t begin(std::vector<std::byte>& out, std::uint32_t type) {
  const std::size_t at = out.size();
  put<std::uint32_t>(out, type);
  put<std::uint32_t>(out, 0);
  return at;
}
// Ends it: the total length, at its start and again at its end.
void finish(std::vector<std::byte>& out, std::size_t at) {
  const auto total = static_cast<std::uint32_t>(out.size() - at + 4);
  std::memcpy(out.data() + at + 4, &total, sizeof total);
  put<std::uint32_t>(out, total);
}

static_assert(std::endian::native == std::endian::little, "pcapng blocks are written in host order: little-endian");

}  // namespace

void append_section_header(std::vector<std::byte>& out, std::string_view application) {
  const std::size_t at = begin(out, kSectionHeaderType);
  put<std::uint32_t>(out, kByteOrderMagic);
  put<std::uint16_t>(out, 1);  // major version
  put<std::uint16_t>(out, 0);  // minor version
  put<std::int64_t>(out, -1);  // section length: not given
  put_string_option(out, kShbUserAppl, application);
  put_end(out);
  finish(out, at);
}

void append_interface(std::vector<std::byte>& out, std::uint32_t snaplen, std::string_view name,
                      std::string_view description) {
  const std::size_t at = begin(out, kInterfaceDescriptionType);
  put<std::uint16_t>(out, kLinkTypeEthernet);
  put<std::uint16_t>(out, 0);  // reserved
  put<std::uint32_t>(out, snaplen);
  put_string_option(out, kIfName, name);
  put_string_option(out, kIfDescription, description);
  const std::uint8_t nanoseconds = 9;  // 10^-9 s
  put_option(out, kIfTsresol, &nanoseconds, 1);
  put_end(out);
  finish(out, at);
}

void append_packet(std::vector<std::byte>& out, std::uint64_t unix_ns, std::span<const std::byte> data,
                   std::uint32_t original_bytes, Direction direction) {
  const std::size_t at = begin(out, kEnhancedPacketType);
  put<std::uint32_t>(out, 0);  // interface id
  put<std::uint32_t>(out, static_cast<std::uint32_t>(unix_ns >> 32));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(unix_ns));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(data.size()));
  put<std::uint32_t>(out, original_bytes);
  put_bytes(out, data.data(), data.size());
  if (direction != Direction::kUnknown) {
    const auto flags = static_cast<std::uint32_t>(direction);
    put_option(out, kEpbFlags, &flags, sizeof flags);
    put_end(out);
  }
  finish(out, at);
}

}  // namespace vswitch::pcapng
