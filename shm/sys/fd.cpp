#include "shm/sys/fd.hpp"

#include <unistd.h>

#include <cstring>

#include "shm/sys/error.hpp"

namespace vswitch::sys {

void Fd::reset() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);  // Linux releases the descriptor even when close() reports EINTR.
    fd_ = -1;
  }
}

std::string SysError::message() const { return std::string(call) + ": " + std::strerror(err); }

}  // namespace vswitch::sys
