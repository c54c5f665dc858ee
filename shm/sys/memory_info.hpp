// What memory a new shared-memory fabric can use: the kernel's MemAvailable and the free
// space of the tmpfs behind POSIX shared memory (/dev/shm), whichever is smaller.
#pragma once

#include <cstdint>
#include <string>

namespace vswitch::sys {

struct MemoryInfo {
  std::uint64_t mem_available_bytes = 0;
  std::uint64_t shm_free_bytes = 0;
  [[nodiscard]] std::uint64_t usable_bytes() const noexcept {
    return mem_available_bytes < shm_free_bytes ? mem_available_bytes : shm_free_bytes;
  }
};

// Reads /proc/meminfo and statvfs("/dev/shm"). A field it cannot read is reported as
// unlimited (UINT64_MAX) rather than blocking start-up on a missing /proc.
MemoryInfo read_memory_info();

}  // namespace vswitch::sys
