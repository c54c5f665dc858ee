#include "endpoints/tap/netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vswitch::endpoints::tap {

sys::Result<NetnsScope, std::string> NetnsScope::enter(const std::string& name) {
  if (name.empty()) return NetnsScope(sys::Fd());
  if (name.find('/') != std::string::npos || name == "." || name == "..")
    return sys::Unexpected(std::string("netns \"" + name + "\": not a namespace name"));
  sys::Fd original(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original.valid())
    return sys::Unexpected(std::string("netns: cannot open /proc/self/ns/net: ") + std::strerror(errno));
  const std::string path = "/run/netns/" + name;
  sys::Fd target(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!target.valid())
    return sys::Unexpected("netns \"" + name + "\": cannot open " + path + ": " + std::strerror(errno) +
                           " (create it with: ip netns add " + name + ")");
  if (::setns(target.get(), CLONE_NEWNET) != 0)
    return sys::Unexpected("netns \"" + name + "\": setns: " + std::strerror(errno) +
                           (errno == EPERM ? " (needs CAP_SYS_ADMIN: run as root)" : ""));
  return NetnsScope(std::move(original));
}

NetnsScope::~NetnsScope() {
  if (!original_.valid()) return;
  if (::setns(original_.get(), CLONE_NEWNET) != 0) {
    // Staying in the wrong namespace would bind every later socket there: not survivable.
    std::fprintf(stderr, "netns: cannot return to the original namespace: %s\n", std::strerror(errno));
    std::abort();
  }
}

}  // namespace vswitch::endpoints::tap
