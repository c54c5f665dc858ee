// GuestMemory: the guest's physical memory as the device sees it: a few regions, each a
// range of guest-physical addresses mapped at some host address (for vhost-user, the
// memfd regions QEMU sends with SET_MEM_TABLE). Every guest address the device follows
// (rings, descriptors, indirect tables, buffers) goes through translate(), which answers
// only for a range that lies wholly inside one region, with overflow-checked arithmetic:
// a buffer that spans two regions or wraps the address space is refused, never split or
// followed (reliability-anchors bad-input class 6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shm/sys/result.hpp"

namespace vswitch::endpoints::virtio {

struct GuestRegion {
  std::uint64_t guest_phys_addr = 0;
  std::uint64_t size = 0;
  std::byte* host = nullptr;  // where [guest_phys_addr, +size) is mapped in this process
};

class GuestMemory {
 public:
  static constexpr std::size_t kMaxRegions = 8;  // VHOST_MEMORY_BASELINE_NREGIONS

  // Validates the table: 1..kMaxRegions regions, each non-empty, mapped, not wrapping the
  // 64-bit guest address space, none overlapping another.
  [[nodiscard]] static sys::Result<GuestMemory, std::string> create(std::vector<GuestRegion> regions);

  // The host bytes of [gpa, gpa + len) when that range lies wholly inside one region.
  [[nodiscard]] std::optional<std::span<std::byte>> translate(std::uint64_t gpa, std::uint64_t len) const noexcept;

  [[nodiscard]] const std::vector<GuestRegion>& regions() const noexcept { return regions_; }

 private:
  explicit GuestMemory(std::vector<GuestRegion> regions) : regions_(std::move(regions)) {}
  std::vector<GuestRegion> regions_;  // sorted by guest_phys_addr
};

}  // namespace vswitch::endpoints::virtio
