#include "vswitch/control/process_limits.hpp"

#include <dirent.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vswitch {
namespace {

std::string sys_error(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// "name(value)", built piece by piece (GCC 12 at -O3 warns -Wrestrict, a false positive,
// on a literal + std::string temporary).
std::string call_with(const char* name, std::uint32_t value) {
  std::string s(name);
  s += '(';
  s += std::to_string(value);
  s += ')';
  return s;
}

// The raw capget/capset interface, version 3: two 32-bit words per set.
struct CapSets {
  std::uint64_t effective = 0;
  std::uint64_t permitted = 0;
  std::uint64_t inheritable = 0;
};

sys::Result<CapSets, std::string> get_caps() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0) return sys::Unexpected(sys_error("capget"));
  const auto join = [](std::uint32_t lo, std::uint32_t hi) { return std::uint64_t{hi} << 32 | lo; };
  return CapSets{join(data[0].effective, data[1].effective), join(data[0].permitted, data[1].permitted),
                 join(data[0].inheritable, data[1].inheritable)};
}

sys::Status<std::string> set_caps(const CapSets& c) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  for (int w = 0; w < 2; ++w) {
    data[w].effective = static_cast<std::uint32_t>(c.effective >> (32 * w));
    data[w].permitted = static_cast<std::uint32_t>(c.permitted >> (32 * w));
    data[w].inheritable = static_cast<std::uint32_t>(c.inheritable >> (32 * w));
  }
  if (::syscall(SYS_capset, &hdr, data) != 0) return sys::Unexpected(sys_error("capset"));
  return {};
}

}  // namespace

sys::Result<std::uint64_t, std::string> effective_capabilities() {
  auto c = get_caps();
  if (!c) return sys::Unexpected(c.error());
  return c.value().effective;
}

sys::Status<std::string> forbid_new_privileges() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return sys::Unexpected(sys_error("prctl(PR_SET_NO_NEW_PRIVS)"));
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return sys::Unexpected(sys_error("prctl(PR_SET_DUMPABLE)"));
  return {};
}

sys::Status<std::string> limit_capabilities(std::uint64_t keep) {
  auto now = get_caps();
  if (!now) return sys::Unexpected(now.error());
  if ((now.value().effective & capability_bit(CAP_SETPCAP)) != 0) {
    for (int cap = 0; cap < 64; ++cap) {
      if ((keep & capability_bit(cap)) != 0) continue;
      const int in = ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
      if (in < 0) break;  // EINVAL: past the last capability this kernel knows
      if (in == 1 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
        return sys::Unexpected(sys_error(("prctl(PR_CAPBSET_DROP, " + std::to_string(cap) + ")").c_str()));
    }
  }
  // Kernels before 4.3 have no ambient set (EINVAL): nothing to clear there.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return sys::Unexpected(sys_error("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"));
  const std::uint64_t left = now.value().permitted & keep;
  return set_caps(CapSets{left, left, 0});
}

sys::Status<std::string> become_user(std::uint32_t uid, std::uint32_t gid) {
  // Groups first: setresuid would take the right to change them.
  if (::setgroups(0, nullptr) != 0) return sys::Unexpected(sys_error("setgroups"));
  if (::setresgid(gid, gid, gid) != 0) return sys::Unexpected(sys_error(call_with("setresgid", gid).c_str()));
  if (::setresuid(uid, uid, uid) != 0) return sys::Unexpected(sys_error(call_with("setresuid", uid).c_str()));
  return {};
}

sys::Status<std::string> clear_bounding_set() {
  for (int cap = 0; cap < 64; ++cap) {
    const int in = ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (in < 0) break;  // EINVAL: past the last capability this kernel knows
    if (in == 1 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
      return sys::Unexpected(sys_error(call_with("prctl(PR_CAPBSET_DROP)", static_cast<std::uint32_t>(cap)).c_str()));
  }
  return {};
}

sys::Status<std::string> close_descriptors_except(const std::vector<int>& keep) {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return sys::Unexpected(sys_error("opendir /proc/self/fd"));
  std::vector<int> open;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = std::atoi(e->d_name);
    if (fd != ::dirfd(d)) open.push_back(fd);
  }
  ::closedir(d);
  for (int fd : open)
    if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);
  return {};
}

}  // namespace vswitch
