// Guest memory that vanishes under its mapping. A front-end's memory is mapped from files
// the VMM still holds; a memfd is refused unless sealed against shrinking, but hugetlbfs
// and tmpfs files (QEMU's memory-backend-file) cannot be sealed, and a VMM that truncates
// one after the device mapped it turns the device's next access to those pages (a ring
// read, a frame copy, a used-ring write) into SIGBUS, whose default action would end the
// endpoint, and again after every restart: the VMM reconnects with the same file.
//
// So each guest mapping is registered here, in a fixed process-wide table, and a SIGBUS
// handler repairs a fault inside one: the whole mapping is replaced in place by anonymous
// memory, the mapping is marked lost, and the faulting access is retried (reads see zeros,
// writes land in memory nobody else sees). The owner then asks lost() and disconnects
// that front-end; nothing read meanwhile may be handed on. A SIGBUS anywhere else is not
// ours: the handler gives it the action it had before (the default: the process dies of
// it), so a real bug still crashes.
//
// Cost to the data path: none per access. An owner learns of a repair by comparing
// sigbus_repairs() (one relaxed load of a word only the handler writes) with the value it
// saw last; only when it changed does it ask lost() of its own mappings.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "shm/sys/result.hpp"

namespace vswitch::endpoints::vhost_user {

// Registered mappings at once, in the whole process: a vhost-user front-end has at most 8
// regions, and an endpoint serves one front-end.
inline constexpr std::size_t kMaxGuardedMappings = 64;

// Installs the SIGBUS handler and unblocks SIGBUS in the calling thread (the first call;
// later ones do nothing). Before the system call filter: it calls sigaction.
[[nodiscard]] sys::Status<std::string> install_sigbus_guard();

// Registers [start, start + length) (a whole mapping, as mmap made it: page-aligned, and
// huge-page-aligned for hugetlbfs); its slot, or nothing when the table is full. Called by
// the mapping's owner after mmap and before the first access.
[[nodiscard]] std::optional<std::uint32_t> guard_mapping(void* start, std::size_t length) noexcept;
// Unregisters it: after the last access and before munmap.
void unguard_mapping(std::uint32_t slot) noexcept;
// Whether the handler replaced this mapping (its file's pages are gone).
[[nodiscard]] bool mapping_lost(std::uint32_t slot) noexcept;
// How many faults the handler has repaired in this process, on any mapping: an owner that
// sees it change since it last looked asks mapping_lost() of its own, after an acquire
// fence (std::atomic_thread_fence), which pairs with the handler's release increment.
namespace detail {
extern std::atomic<std::uint64_t> sigbus_repairs;  // written only by the handler
}
[[nodiscard]] inline std::uint64_t sigbus_repairs() noexcept {
  return detail::sigbus_repairs.load(std::memory_order_relaxed);
}

}  // namespace vswitch::endpoints::vhost_user
