// Fuzz target: vhost-user message decoding. The input is a header, a payload and a number
// of descriptors (eventfds standing in for what SCM_RIGHTS delivers); decode() must either
// refuse or return a message whose every field is within the ranges it promises, and must
// close every descriptor it does not hand on.
#include <sys/eventfd.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "endpoints/vhost_user/message.hpp"

using namespace vswitch;
using namespace vswitch::endpoints::vhost_user;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < kHeaderBytes + 1) return 0;
  Header h;
  std::memcpy(&h, data, sizeof h);
  const std::size_t nfds = data[kHeaderBytes] % (kMaxFds + 1);
  std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(data + kHeaderBytes + 1),
                                     size - kHeaderBytes - 1);
  std::vector<sys::Fd> fds;
  std::vector<int> raw;
  for (std::size_t i = 0; i < nfds; ++i) {
    fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
    raw.push_back(fds.back().get());
  }
  auto m = decode(h, payload, std::move(fds));
  if (m.has_value()) {
    if (m->fds.size() > kMaxFds) std::abort();
    if (auto* t = std::get_if<MemTable>(&m->payload)) {
      if (t->regions.empty() || t->regions.size() > kMaxMemRegions || t->regions.size() != m->fds.size()) std::abort();
      for (const auto& r : t->regions)
        if (r.memory_size == 0 || r.guest_phys_addr + r.memory_size < r.guest_phys_addr) std::abort();
    }
    if (auto* s = std::get_if<VringState>(&m->payload); s && s->index >= kMaxQueues) std::abort();
    if (auto* f = std::get_if<VringFile>(&m->payload); f && (f->index >= kMaxQueues || m->fds.size() != (f->has_fd ? 1u : 0u)))
      std::abort();
  } else {
    for (int fd : raw)  // every descriptor of a refused message is closed
      if (::fcntl(fd, F_GETFD) != -1) std::abort();
  }
  return 0;
}
