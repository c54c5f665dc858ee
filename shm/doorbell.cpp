#include "shm/doorbell.hpp"

namespace vswitch::shm {

sys::Result<EventFdDoorbell, sys::SysError> EventFdDoorbell::create() {
  auto fd = sys::EventFd::create();
  if (!fd) return sys::Unexpected{fd.error()};
  return EventFdDoorbell(std::move(fd).value());
}

bool EventFdDoorbell::wait(std::chrono::nanoseconds timeout) noexcept {
  ++waits_;
  return fd_.wait(timeout);
}

}  // namespace vswitch::shm
