// An OS call that failed: which call, and errno. EAGAIN is not an error on our paths
// (it is a value: an empty optional); everything else is one of these.
#pragma once

#include <string>

namespace vswitch::sys {

struct SysError {
  const char* call = "";
  int err = 0;
  [[nodiscard]] std::string message() const;
};

}  // namespace vswitch::sys
