// What an endpoint process gives up right after vswitchd forks it: the means to gain
// privileges, to be inspected or dumped by another process of its uid, its capabilities,
// and every descriptor it was not handed on purpose. Linux only; no libcap.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shm/sys/result.hpp"

namespace vswitch {

// A set of capabilities as a mask of (1 << CAP_*).
[[nodiscard]] constexpr std::uint64_t capability_bit(int cap) noexcept { return std::uint64_t{1} << cap; }

// The effective capability set of this process.
[[nodiscard]] sys::Result<std::uint64_t, std::string> effective_capabilities();

// PR_SET_NO_NEW_PRIVS (no execve can ever give this process or its descendants more
// privileges) and PR_SET_DUMPABLE 0 (no core dump; processes of the same uid cannot ptrace
// it or read its memory through /proc; its /proc files belong to root).
[[nodiscard]] sys::Status<std::string> forbid_new_privileges();

// Leaves this process with at most the capabilities in `keep`: every other one leaves the
// bounding set (when the process holds CAP_SETPCAP, which dropping from it needs; without
// it, there is nothing to gain anyway after forbid_new_privileges), the ambient and
// inheritable sets are cleared, and effective = permitted = keep (those it had). To drop
// the rest later, keep CAP_SETPCAP as well and call it again with 0.
[[nodiscard]] sys::Status<std::string> limit_capabilities(std::uint64_t keep);

// Gives up root for `uid` and `gid`: no supplementary group, real = effective = saved =
// filesystem ids. Needs CAP_SETGID and CAP_SETUID. From uid 0 to another, the kernel then
// clears the permitted and effective capability sets, and resets two attributes the
// caller sets again after: the dumpable flag (forbid_new_privileges) and the
// parent-death signal.
[[nodiscard]] sys::Status<std::string> become_user(std::uint32_t uid, std::uint32_t gid);

// Empties the bounding set (needs CAP_SETPCAP; every capability the process holds now is
// kept until it changes uid or calls limit_capabilities).
[[nodiscard]] sys::Status<std::string> clear_bounding_set();

// Closes every descriptor of this process except those in `keep`.
[[nodiscard]] sys::Status<std::string> close_descriptors_except(const std::vector<int>& keep);

}  // namespace vswitch
