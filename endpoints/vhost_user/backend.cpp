#include "endpoints/vhost_user/backend.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "endpoints/vhost_user/sigbus_guard.hpp"

namespace vswitch::endpoints::vhost_user {

namespace {

// vhost-user spec, "VHOST_USER_SET_VRING_KICK" / "..._CALL" / "..._ERR": "The fd is an
// eventfd" (descriptor passed in the ancillary data). Anything else (a pipe that hangs
// up and is reported readable forever, a regular file epoll refuses, a socket, a
// blocking descriptor a read would sleep on) is refused here, where it arrives. The
// kernel names an eventfd's file "anon_inode:[eventfd]". The descriptor is made
// non-blocking (its file description is shared with the front-end, whose QEMU opens
// them non-blocking anyway), so that no read or write of it can stop the loop.
sys::Status<std::string> adopt_eventfd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return sys::Unexpected("fstat: " + std::string(std::strerror(errno)));
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  char target[64] = {};
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n < 0) return sys::Unexpected("readlink " + link + ": " + std::strerror(errno));
  constexpr std::string_view kEventFd = "anon_inode:[eventfd]";
  if (std::string_view(target, static_cast<std::size_t>(n)) != kEventFd)
    return sys::Unexpected("not an eventfd (" + std::string(target, static_cast<std::size_t>(n)) + ")");
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    return sys::Unexpected("cannot make it non-blocking: " + std::string(std::strerror(errno)));
  return {};
}

// virtio 1.x 5.1.3.1 "Feature bit requirements": "Some networking feature bits require
// other networking feature bits", of which these concern what this device offers (no
// UFO, no CTRL_VQ and what depends on it):
//   GUEST_TSO4, GUEST_TSO6 require GUEST_CSUM;  GUEST_ECN requires GUEST_TSO4 or GUEST_TSO6;
//   HOST_TSO4, HOST_TSO6 require CSUM;          HOST_ECN requires HOST_TSO4 or HOST_TSO6.
// A set that breaks one is a driver the device cannot serve by the spec's rules (a TSO
// frame whose checksum it was never told how to complete): a protocol error.
struct FeatureDependency {
  std::uint64_t feature;
  std::uint64_t needs_any;  // at least one of these
  const char* rule;
};
constexpr FeatureDependency kFeatureDependencies[] = {
    {kFeatureGuestTso4, kFeatureGuestCsum, "GUEST_TSO4 requires GUEST_CSUM"},
    {kFeatureGuestTso6, kFeatureGuestCsum, "GUEST_TSO6 requires GUEST_CSUM"},
    {kFeatureGuestEcn, kFeatureGuestTso4 | kFeatureGuestTso6, "GUEST_ECN requires GUEST_TSO4 or GUEST_TSO6"},
    {kFeatureHostTso4, kFeatureCsum, "HOST_TSO4 requires CSUM"},
    {kFeatureHostTso6, kFeatureCsum, "HOST_TSO6 requires CSUM"},
    {kFeatureHostEcn, kFeatureHostTso4 | kFeatureHostTso6, "HOST_ECN requires HOST_TSO4 or HOST_TSO6"},
};

// Guest memory the front-end shrinks under the mapping raises SIGBUS on the endpoint's
// next access to it. A memfd says whether it can be shrunk (F_GET_SEALS): one without
// F_SEAL_SHRINK is refused. QEMU's memory-backend-memfd seals by default (seal=on:
// F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL), so its guests are served; with seal=off the
// refusal names the fix. Other files (hugetlbfs or tmpfs files of memory-backend-file,
// DPDK's hugepage files) cannot be sealed by their owner in general, so they are accepted
// with the size check at map time, and a SIGBUS in their mappings is caught by the guard
// (sigbus_guard.hpp), which disconnects that front-end; the kernel names a memfd's file
// "/memfd:NAME (deleted)".
sys::Status<std::string> check_not_shrinkable(int fd) {
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  char target[256] = {};
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n < 0) return sys::Unexpected("readlink " + link + ": " + std::strerror(errno));
  if (std::string_view(target, static_cast<std::size_t>(n)).substr(0, 7) != "/memfd:") return {};
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
    return sys::Unexpected(std::string("a memfd without F_SEAL_SHRINK (it could be shrunk under the mapping; ") +
                           "QEMU: memory-backend-memfd with seal=on)");
  return {};
}

// The size of the pages a mapping of `fd` is made of: a hugetlbfs file's huge page
// (its file system's block size), else the base page. A mapping's length is rounded up
// to it, as mmap does, so that munmap and the SIGBUS guard (which replaces the mapping
// whole) name exactly the mapping.
std::size_t page_size_of(int fd) {
  const auto base = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0 || fs.f_type != HUGETLBFS_MAGIC || fs.f_bsize <= 0) return base;
  return static_cast<std::size_t>(fs.f_bsize);
}

}  // namespace

Backend::~Backend() { unmap_all(); }

void Backend::unmap_all() {
  for (Vring& v : vrings_) v.queue.reset();  // no queue may outlive the memory it points into
  memory_.reset();
  for (const Mapping& m : mappings_) {
    unguard_mapping(m.guard);  // before munmap: the range may be mapped again by anyone
    ::munmap(m.base, m.length);
  }
  mappings_.clear();
}

std::optional<std::size_t> Backend::lost_region() const noexcept {
  for (std::size_t i = 0; i < mappings_.size(); ++i)
    if (mapping_lost(mappings_[i].guard)) return i;
  return std::nullopt;
}

void Backend::reset() {
  for (std::uint32_t i = 0; i < kMaxQueues; ++i) {
    stop(i);
    vrings_[i] = Vring{};
  }
  unmap_all();
  features_ = protocol_features_ = 0;
  mtu_ = 0;
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

Backend::Step Backend::check_mem_table(const MemTable& table, const std::vector<sys::Fd>& fds) const {
  std::uint64_t total = 0;  // <= max_guest_memory_
  for (std::size_t i = 0; i < table.regions.size(); ++i) {
    const MemRegion& r = table.regions[i];
    const std::string name = "region " + std::to_string(i) + ": ";
    struct stat st {};
    if (::fstat(fds[i].get(), &st) != 0) return sys::Unexpected(name + "fstat failed");
    // The whole region must exist in the file now (a shorter file would fault at once; and
    // a VMM that truncated a file under the mapping cannot come back with it).
    if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < r.mmap_offset + r.memory_size)
      return sys::Unexpected(name + "file of " + std::to_string(st.st_size) + " bytes is shorter than offset + size " +
                             std::to_string(r.mmap_offset + r.memory_size));
    if (auto st2 = check_not_shrinkable(fds[i].get()); !st2) return sys::Unexpected(name + st2.error());
    const std::uint64_t length = r.mmap_offset + r.memory_size;  // what map_mem_table maps; message.cpp: no overflow
    if (length > max_guest_memory_ - total)
      return sys::Unexpected(name + "guest memory to map would exceed this endpoint's limit of " +
                             std::to_string(max_guest_memory_) + " bytes");
    total += length;
  }
  return {};
}

Backend::Step Backend::map_mem_table(const MemTable& table, std::vector<sys::Fd>& fds) {
  for (std::uint32_t i = 0; i < kMaxQueues; ++i) stop(i);
  unmap_all();
  if (auto st = check_mem_table(table, fds); !st) return st;
  std::vector<virtio::GuestRegion> regions;
  for (std::size_t i = 0; i < table.regions.size(); ++i) {
    const MemRegion& r = table.regions[i];
    const std::size_t page = page_size_of(fds[i].get());
    const auto length = static_cast<std::size_t>((r.mmap_offset + r.memory_size + page - 1) / page * page);
    void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i].get(), 0);
    if (base == MAP_FAILED) {
      unmap_all();
      return sys::Unexpected("region " + std::to_string(i) + ": mmap: " + std::strerror(errno));
    }
    // Registered before the first access: the file may still shrink under the mapping
    // (hugetlbfs and tmpfs files cannot be sealed), and a SIGBUS in it then disconnects
    // this front-end instead of ending the process.
    const auto guard = guard_mapping(base, length);
    if (!guard) {
      ::munmap(base, length);
      unmap_all();
      return sys::Unexpected("region " + std::to_string(i) + ": more than " + std::to_string(kMaxGuardedMappings) +
                             " guest memory mappings in this process");
    }
    Mapping m{base, length, *guard, r.userspace_addr, r.guest_phys_addr, r.memory_size,
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
  return {};  // the fds may close now: the mappings stay
}

Backend::Step Backend::start_if_ready(std::uint32_t index) {
  Vring& v = vrings_[index];
  if (v.queue || !memory_ || v.num == 0 || !v.addr || !v.kick.valid()) return {};
  if (has(kFeatureProtocolFeatures) && !v.enabled) return {};
  const auto desc = to_guest_phys(v.addr->desc_user_addr);
  const auto avail = to_guest_phys(v.addr->avail_user_addr);
  const auto used = to_guest_phys(v.addr->used_user_addr);
  if (!desc || !avail || !used) return sys::Unexpected("vring " + std::to_string(index) + ": a ring address is not in guest memory");
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
  if (!q) return sys::Unexpected("vring " + std::to_string(index) + ": " + q.error());
  v.queue.emplace(q.value());
  return {};
}

// Each request's effect. A handler returns an error when the front-end broke the
// protocol; it may set out.reply and out.queues_changed.
Backend::Step Backend::set_features(std::uint64_t v, Outcome& out) {
  if (v & ~kOfferedFeatures) return sys::Unexpected(std::string("SET_FEATURES with features that were not offered"));
  if (!(v & kFeatureVersion1)) return sys::Unexpected(std::string("the front-end did not accept VERSION_1"));
  for (const FeatureDependency& d : kFeatureDependencies)
    if ((v & d.feature) != 0 && (v & d.needs_any) == 0)
      return sys::Unexpected("feature dependency missing (virtio 1.x 5.1.3.1): " + std::string(d.rule));
  features_ = v;
  for (std::uint32_t i = 0; i < kMaxQueues; ++i) {  // EVENT_IDX may have changed
    if (vrings_[i].queue) {
      stop(i);
      out.queues_changed = true;
    }
    if (auto st = start_if_ready(i); !st) return st;
  }
  return {};
}

Backend::Step Backend::set_mem_table(const MemTable& table, std::vector<sys::Fd>& fds, Outcome& out) {
  if (auto st = map_mem_table(table, fds); !st) return st;
  out.queues_changed = true;
  for (std::uint32_t i = 0; i < kMaxQueues; ++i)
    if (auto st = start_if_ready(i); !st) return st;
  return {};
}

Backend::Step Backend::set_vring_state(Request request, const VringState& s, Outcome& out) {
  out.queues_changed = true;
  Vring& v = vrings_[s.index];
  if (request == Request::kSetVringEnable) {
    v.enabled = s.num != 0;
    if (v.enabled) return start_if_ready(s.index);
    stop(s.index);
    return {};
  }
  if (request == Request::kSetVringNum) {
    // virtio 1.x 2.6: a split ring's size is a power of 2, at most 32768.
    if (s.num == 0 || s.num > kMaxSplitQueueSize || (s.num & (s.num - 1)) != 0)
      return sys::Unexpected("queue size " + std::to_string(s.num) +
                             " refused: a split ring's size is a power of two in 1..32768 (virtio 1.x 2.6)");
    if (s.num > max_queue_size_)
      return sys::Unexpected("queue size " + std::to_string(s.num) + " refused: above this endpoint's configured " +
                             "vhost_user.queue_size " + std::to_string(max_queue_size_));
  }
  stop(s.index);  // NUM and BASE change the ring; GET_VRING_BASE stops it
  if (request == Request::kSetVringNum) {
    v.num = static_cast<std::uint16_t>(s.num);
  } else if (request == Request::kSetVringBase) {
    v.base = static_cast<std::uint16_t>(s.num);
  } else {  // GET_VRING_BASE
    v.kick.reset();
    out.reply = encode_reply(request, VringState{s.index, v.base});
  }
  return {};
}

Backend::Step Backend::set_vring_addr(const VringAddr& a, Outcome& out) {
  stop(a.index);
  vrings_[a.index].addr = a;
  out.queues_changed = true;
  return start_if_ready(a.index);
}

Backend::Step Backend::set_vring_file(Request request, const VringFile& f, std::vector<sys::Fd>& fds, Outcome& out) {
  if (request == Request::kSetVringKick && !f.has_fd)
    return sys::Unexpected(std::string("SET_VRING_KICK without a descriptor (polling mode is not supported)"));
  sys::Fd fd = f.has_fd ? std::move(fds[0]) : sys::Fd();
  if (fd.valid()) {
    if (auto st = adopt_eventfd(fd.get()); !st) return sys::Unexpected("vring " + std::to_string(f.index) + ": " + st.error());
  }
  Vring& v = vrings_[f.index];
  out.queues_changed = true;
  if (request == Request::kSetVringKick) {
    stop(f.index);
    v.kick = std::move(fd);
    return start_if_ready(f.index);
  }
  if (request == Request::kSetVringCall) v.call = std::move(fd);
  else v.err = std::move(fd);
  return {};
}

sys::Result<Backend::Outcome, std::string> Backend::handle(Message m) {
  Outcome out;
  auto reply_u64 = [&](std::uint64_t v) { out.reply = encode_reply(m.request, v); };
  Step problem;
  switch (m.request) {
    case Request::kGetFeatures: reply_u64(kOfferedFeatures); break;
    case Request::kSetFeatures: problem = set_features(std::get<std::uint64_t>(m.payload), out); break;
    case Request::kSetOwner: break;  // the session is the connection (one front-end at a time)
    case Request::kResetOwner:
    case Request::kResetDevice:
      reset();
      out.queues_changed = true;
      break;
    case Request::kGetProtocolFeatures: reply_u64(kOfferedProtocolFeatures); break;
    case Request::kSetProtocolFeatures: {
      const auto v = std::get<std::uint64_t>(m.payload);
      if (v & ~kOfferedProtocolFeatures) problem = sys::Unexpected(std::string("SET_PROTOCOL_FEATURES with features not offered"));
      else protocol_features_ = v;
      break;
    }
    case Request::kGetQueueNum: reply_u64(1); break;
    case Request::kSetMemTable: problem = set_mem_table(std::get<MemTable>(m.payload), m.fds, out); break;
    case Request::kSetVringNum:
    case Request::kSetVringBase:
    case Request::kGetVringBase:
    case Request::kSetVringEnable:
      problem = set_vring_state(m.request, std::get<VringState>(m.payload), out);
      break;
    case Request::kSetVringAddr: problem = set_vring_addr(std::get<VringAddr>(m.payload), out); break;
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr:
      problem = set_vring_file(m.request, std::get<VringFile>(m.payload), m.fds, out);
      break;
    case Request::kNetSetMtu: {
      // vhost-user, VHOST_USER_NET_SET_MTU: "If VHOST_USER_PROTOCOL_F_REPLY_ACK is
      // negotiated, the back-end must respond with zero in case the specified MTU is
      // valid, or non-zero otherwise." QEMU then does not start the device, and says so.
      // Without REPLY_ACK a refusal can only end the session.
      const auto v = std::get<std::uint64_t>(m.payload);
      if (v >= kMinGuestMtu && v <= max_mtu_) {
        mtu_ = static_cast<std::uint32_t>(v);
        out.notice = "the front-end gives its guest MTU " + std::to_string(v);
        break;
      }
      const std::string why = "NET_SET_MTU " + std::to_string(v) + " refused: outside [" +
                              std::to_string(kMinGuestMtu) + ", " + std::to_string(max_mtu_) + "] (this port's mtu)";
      if (m.need_reply && (protocol_features_ & kProtocolReplyAck)) {
        reply_u64(1);
        out.notice = why;
      } else {
        problem = sys::Unexpected(why);
      }
      break;
    }
    case Request::kSendRarp:
    case Request::kSetStatus:
      break;  // nothing to do for these here
    case Request::kGetStatus: reply_u64(0); break;
    case Request::kSetLogBase:
    case Request::kSetLogFd:
    case Request::kGetConfig:
    case Request::kSetConfig:
    case Request::kGetMaxMemSlots:
      problem = sys::Unexpected("unsupported request " + std::string(to_string(m.request)));
      break;
  }
  if (!problem) return sys::Unexpected(problem.error());
  // REPLY_ACK: a request that asked for a reply and has none of its own gets status 0.
  if (m.need_reply && !out.reply && (protocol_features_ & kProtocolReplyAck)) reply_u64(0);
  return out;
}

}  // namespace vswitch::endpoints::vhost_user
