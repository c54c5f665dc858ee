#include "endpoints/vhost_user/backend.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace vswitch::endpoints::vhost_user {

Backend::~Backend() { unmap_all(); }

void Backend::unmap_all() {
  for (Vring& v : vrings_) v.queue.reset();  // no queue may outlive the memory it points into
  memory_.reset();
  for (const Mapping& m : mappings_) ::munmap(m.base, m.length);
  mappings_.clear();
}

void Backend::reset() {
  for (std::uint32_t i = 0; i < kMaxQueues; ++i) {
    stop(i);
    vrings_[i] = Vring{};
  }
  unmap_all();
  features_ = protocol_features_ = 0;
}

virtio::SplitQueue* Backend::queue(std::uint32_t index) noexcept {
  if (index >= kMaxQueues || !vrings_[index].queue) return nullptr;
  return &*vrings_[index].queue;
}

void Backend::stop(std::uint32_t index) {
  Vring& v = vrings_[index];
  if (v.queue) v.base = v.queue->next_avail();  // where a restart resumes
  v.queue.reset();
}

std::optional<std::uint64_t> Backend::to_guest_phys(std::uint64_t user_addr) const noexcept {
  for (const Mapping& m : mappings_)
    if (user_addr >= m.userspace_addr && user_addr - m.userspace_addr < m.size)
      return m.guest_phys_addr + (user_addr - m.userspace_addr);
  return std::nullopt;
}

sys::Result<bool, std::string> Backend::set_mem_table(const MemTable& table, std::vector<sys::Fd>& fds) {
  for (std::uint32_t i = 0; i < kMaxQueues; ++i) stop(i);
  unmap_all();
  std::vector<virtio::GuestRegion> regions;
  for (std::size_t i = 0; i < table.regions.size(); ++i) {
    const MemRegion& r = table.regions[i];
    struct stat st {};
    if (::fstat(fds[i].get(), &st) != 0) return sys::Unexpected("region " + std::to_string(i) + ": fstat failed");
    // The whole region must exist in the file now (a shorter file would SIGBUS us later).
    if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < r.mmap_offset + r.memory_size)
      return sys::Unexpected("region " + std::to_string(i) + ": file of " + std::to_string(st.st_size) +
                             " bytes is shorter than offset + size " + std::to_string(r.mmap_offset + r.memory_size));
    const std::size_t length = static_cast<std::size_t>(r.mmap_offset + r.memory_size);
    void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i].get(), 0);
    if (base == MAP_FAILED) {
      unmap_all();
      return sys::Unexpected("region " + std::to_string(i) + ": mmap: " + std::strerror(errno));
    }
    Mapping m{base, length, r.userspace_addr, r.guest_phys_addr, r.memory_size,
              static_cast<std::byte*>(base) + r.mmap_offset};
    mappings_.push_back(m);
    regions.push_back(virtio::GuestRegion{r.guest_phys_addr, r.memory_size, m.host});
  }
  auto memory = virtio::GuestMemory::create(std::move(regions));
  if (!memory) {
    unmap_all();
    return sys::Unexpected(memory.error());
  }
  memory_.emplace(std::move(memory.value()));
  return true;  // the fds may close now: the mappings stay
}

std::optional<std::string> Backend::start_if_ready(std::uint32_t index) {
  Vring& v = vrings_[index];
  if (v.queue || !memory_ || v.num == 0 || !v.addr || !v.kick.valid()) return std::nullopt;
  if (has(kFeatureProtocolFeatures) && !v.enabled) return std::nullopt;
  const auto desc = to_guest_phys(v.addr->desc_user_addr);
  const auto avail = to_guest_phys(v.addr->avail_user_addr);
  const auto used = to_guest_phys(v.addr->used_user_addr);
  if (!desc || !avail || !used) return "vring " + std::to_string(index) + ": a ring address is not in guest memory";
  virtio::QueueLayout layout;
  layout.size = v.num;
  layout.desc_gpa = *desc;
  layout.avail_gpa = *avail;
  layout.used_gpa = *used;
  layout.event_idx = has(kFeatureEventIdx);
  // The used index continues from what the ring holds (after a reconnect the front-end
  // kept it); the avail position is the base the front-end set.
  std::uint16_t next_used = v.base;
  if (auto idx = memory_->translate(*used + 2, 2)) std::memcpy(&next_used, idx->data(), 2);
  auto q = virtio::SplitQueue::create(*memory_, layout, v.base, next_used);
  if (!q) return "vring " + std::to_string(index) + ": " + q.error();
  v.queue.emplace(std::move(q.value()));
  return std::nullopt;
}

sys::Result<Backend::Outcome, std::string> Backend::handle(Message m) {
  using sys::Unexpected;
  Outcome out;
  bool replied = false;
  auto reply_u64 = [&](std::uint64_t v) {
    out.reply = encode_reply(m.request, v);
    replied = true;
  };
  std::optional<std::string> problem;
  switch (m.request) {
    case Request::kGetFeatures:
      reply_u64(kOfferedFeatures);
      break;
    case Request::kSetFeatures: {
      const auto v = std::get<std::uint64_t>(m.payload);
      if (v & ~kOfferedFeatures) return Unexpected(std::string("SET_FEATURES with features that were not offered"));
      if (!(v & kFeatureVersion1)) return Unexpected(std::string("the front-end did not accept VERSION_1"));
      features_ = v;
      for (std::uint32_t i = 0; i < kMaxQueues; ++i) {  // EVENT_IDX may have changed
        if (vrings_[i].queue) {
          stop(i);
          out.queues_changed = true;
        }
        problem = start_if_ready(i);
        if (problem) break;
      }
      break;
    }
    case Request::kSetOwner:
      // The session is the connection (one front-end at a time): nothing to record.
      break;
    case Request::kResetOwner:
    case Request::kResetDevice:
      reset();
      out.queues_changed = true;
      break;
    case Request::kGetProtocolFeatures:
      reply_u64(kOfferedProtocolFeatures);
      break;
    case Request::kSetProtocolFeatures: {
      const auto v = std::get<std::uint64_t>(m.payload);
      if (v & ~kOfferedProtocolFeatures) return Unexpected(std::string("SET_PROTOCOL_FEATURES with features not offered"));
      protocol_features_ = v;
      break;
    }
    case Request::kGetQueueNum:
      reply_u64(1);
      break;
    case Request::kSetMemTable: {
      auto r = set_mem_table(std::get<MemTable>(m.payload), m.fds);
      if (!r) return Unexpected(r.error());
      for (std::uint32_t i = 0; i < kMaxQueues && !problem; ++i) problem = start_if_ready(i);
      out.queues_changed = true;
      break;
    }
    case Request::kSetVringNum: {
      const auto s = std::get<VringState>(m.payload);
      if (s.num > max_queue_size_)
        return Unexpected("queue size " + std::to_string(s.num) + " above this endpoint's limit " +
                          std::to_string(max_queue_size_));
      stop(s.index);
      vrings_[s.index].num = static_cast<std::uint16_t>(s.num);
      out.queues_changed = true;
      break;
    }
    case Request::kSetVringAddr: {
      const auto a = std::get<VringAddr>(m.payload);
      stop(a.index);
      vrings_[a.index].addr = a;
      problem = start_if_ready(a.index);
      out.queues_changed = true;
      break;
    }
    case Request::kSetVringBase: {
      const auto s = std::get<VringState>(m.payload);
      stop(s.index);
      vrings_[s.index].base = static_cast<std::uint16_t>(s.num);
      out.queues_changed = true;
      break;
    }
    case Request::kGetVringBase: {
      const auto s = std::get<VringState>(m.payload);
      stop(s.index);  // GET_VRING_BASE stops the ring
      vrings_[s.index].kick.reset();
      out.reply = encode_reply(m.request, VringState{s.index, vrings_[s.index].base});
      replied = true;
      out.queues_changed = true;
      break;
    }
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr: {
      const auto f = std::get<VringFile>(m.payload);
      if (m.request == Request::kSetVringKick && !f.has_fd)
        return Unexpected(std::string("SET_VRING_KICK without a descriptor (polling mode is not supported)"));
      sys::Fd fd = f.has_fd ? std::move(m.fds[0]) : sys::Fd();
      Vring& v = vrings_[f.index];
      if (m.request == Request::kSetVringKick) {
        stop(f.index);
        v.kick = std::move(fd);
        problem = start_if_ready(f.index);
      } else if (m.request == Request::kSetVringCall) {
        v.call = std::move(fd);
      } else {
        v.err = std::move(fd);
      }
      out.queues_changed = true;
      break;
    }
    case Request::kSetVringEnable: {
      const auto s = std::get<VringState>(m.payload);
      vrings_[s.index].enabled = s.num != 0;
      if (s.num == 0) stop(s.index);
      else problem = start_if_ready(s.index);
      out.queues_changed = true;
      break;
    }
    case Request::kSendRarp:
    case Request::kNetSetMtu:
    case Request::kSetStatus:
      break;  // nothing to do for these here
    case Request::kGetStatus:
      reply_u64(0);
      break;
    case Request::kSetLogBase:
    case Request::kSetLogFd:
    case Request::kGetConfig:
    case Request::kSetConfig:
    case Request::kGetMaxMemSlots:
      return Unexpected(std::string("unsupported request ") + std::string(to_string(m.request)));
  }
  if (problem) return Unexpected(*problem);
  // REPLY_ACK: a request that asked for a reply and has none of its own gets status 0.
  if (m.need_reply && !replied && (protocol_features_ & kProtocolReplyAck)) reply_u64(0);
  return out;
}

}  // namespace vswitch::endpoints::vhost_user
