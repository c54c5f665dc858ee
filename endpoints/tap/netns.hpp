// NetnsScope: runs a piece of code inside a named network namespace (/run/netns/NAME, as
// `ip netns add` makes it) and returns the calling thread to the namespace it came from.
// Sockets and TAP devices opened inside stay bound to that namespace after leaving it.
#pragma once

#include <string>

#include "shm/sys/fd.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::endpoints::tap {

class NetnsScope {
 public:
  // Enters `name` (empty: stays where it is). Fails with a message naming the namespace.
  [[nodiscard]] static sys::Result<NetnsScope, std::string> enter(const std::string& name);
  NetnsScope(NetnsScope&&) noexcept = default;
  NetnsScope& operator=(NetnsScope&&) = delete;
  ~NetnsScope();  // back to the original namespace

 private:
  explicit NetnsScope(sys::Fd original) : original_(std::move(original)) {}
  sys::Fd original_;  // invalid when nothing was entered
};

}  // namespace vswitch::endpoints::tap
