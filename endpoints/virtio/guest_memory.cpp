#include "endpoints/virtio/guest_memory.hpp"

#include <algorithm>

namespace vswitch::endpoints::virtio {

sys::Result<GuestMemory, std::string> GuestMemory::create(std::vector<GuestRegion> regions) {
  if (regions.empty() || regions.size() > kMaxRegions)
    return sys::Unexpected(std::string("guest memory: ") + std::to_string(regions.size()) + " regions (1.." +
                           std::to_string(kMaxRegions) + " allowed)");
  std::sort(regions.begin(), regions.end(),
            [](const GuestRegion& a, const GuestRegion& b) { return a.guest_phys_addr < b.guest_phys_addr; });
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const GuestRegion& r = regions[i];
    const std::string which = "guest memory region " + std::to_string(i);
    if (r.size == 0) return sys::Unexpected(which + ": empty");
    if (r.host == nullptr) return sys::Unexpected(which + ": not mapped");
    if (r.guest_phys_addr + r.size < r.guest_phys_addr) return sys::Unexpected(which + ": wraps the address space");
    if (i > 0 && regions[i - 1].guest_phys_addr + regions[i - 1].size > r.guest_phys_addr)
      return sys::Unexpected(which + ": overlaps the region before it");
  }
  return GuestMemory(std::move(regions));
}

std::optional<std::span<std::byte>> GuestMemory::translate(std::uint64_t gpa, std::uint64_t len) const noexcept {
  for (const GuestRegion& r : regions_) {
    if (gpa < r.guest_phys_addr) break;  // sorted: no later region can hold it
    const std::uint64_t offset = gpa - r.guest_phys_addr;
    if (offset >= r.size) continue;
    if (len > r.size - offset) return std::nullopt;  // runs past this region's end (or wraps)
    return std::span<std::byte>(r.host + offset, static_cast<std::size_t>(len));
  }
  return std::nullopt;
}

}  // namespace vswitch::endpoints::virtio
