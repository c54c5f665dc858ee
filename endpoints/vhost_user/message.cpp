#include "endpoints/vhost_user/message.hpp"

#include <cstring>

namespace vswitch::endpoints::vhost_user {

namespace {

// What each request carries.
enum class Shape : std::uint8_t { kNone, kU64, kState, kAddr, kMemTable, kVringFile, kUnsupported };

// Every request this back-end knows: its name in the vhost-user specification and what
// its payload is. Requests for features we do not offer (LOG_ALL, CONFIG,
// CONFIGURE_MEM_SLOTS) are known but unsupported: a front-end that sends them anyway gets
// an error, not a guess.
struct RequestInfo {
  Request request;
  std::string_view name;
  Shape shape;
};
constexpr RequestInfo kRequests[] = {
    {Request::kGetFeatures, "GET_FEATURES", Shape::kNone},
    {Request::kSetFeatures, "SET_FEATURES", Shape::kU64},
    {Request::kSetOwner, "SET_OWNER", Shape::kNone},
    {Request::kResetOwner, "RESET_OWNER", Shape::kNone},
    {Request::kSetMemTable, "SET_MEM_TABLE", Shape::kMemTable},
    {Request::kSetLogBase, "SET_LOG_BASE", Shape::kUnsupported},
    {Request::kSetLogFd, "SET_LOG_FD", Shape::kUnsupported},
    {Request::kSetVringNum, "SET_VRING_NUM", Shape::kState},
    {Request::kSetVringAddr, "SET_VRING_ADDR", Shape::kAddr},
    {Request::kSetVringBase, "SET_VRING_BASE", Shape::kState},
    {Request::kGetVringBase, "GET_VRING_BASE", Shape::kState},
    {Request::kSetVringKick, "SET_VRING_KICK", Shape::kVringFile},
    {Request::kSetVringCall, "SET_VRING_CALL", Shape::kVringFile},
    {Request::kSetVringErr, "SET_VRING_ERR", Shape::kVringFile},
    {Request::kGetProtocolFeatures, "GET_PROTOCOL_FEATURES", Shape::kNone},
    {Request::kSetProtocolFeatures, "SET_PROTOCOL_FEATURES", Shape::kU64},
    {Request::kGetQueueNum, "GET_QUEUE_NUM", Shape::kNone},
    {Request::kSetVringEnable, "SET_VRING_ENABLE", Shape::kState},
    {Request::kSendRarp, "SEND_RARP", Shape::kU64},
    {Request::kNetSetMtu, "NET_SET_MTU", Shape::kU64},
    {Request::kGetConfig, "GET_CONFIG", Shape::kUnsupported},
    {Request::kSetConfig, "SET_CONFIG", Shape::kUnsupported},
    {Request::kResetDevice, "RESET_DEVICE", Shape::kNone},
    {Request::kGetMaxMemSlots, "GET_MAX_MEM_SLOTS", Shape::kUnsupported},
    {Request::kSetStatus, "SET_STATUS", Shape::kU64},
    {Request::kGetStatus, "GET_STATUS", Shape::kNone},
};

// The table's entry for a request number from the wire, or null (a number outside it).
const RequestInfo* find_request(std::uint32_t request) noexcept {
  for (const auto& r : kRequests)
    if (static_cast<std::uint32_t>(r.request) == request) return &r;
  return nullptr;
}

Shape shape_of(std::uint32_t request) {
  const RequestInfo* r = find_request(request);
  return r != nullptr ? r->shape : Shape::kUnsupported;
}

}  // namespace

std::string_view to_string(Request r) {
  const RequestInfo* info = find_request(static_cast<std::uint32_t>(r));
  return info != nullptr ? info->name : "unknown";
}

std::string_view to_string(MessageError e) {
  switch (e) {
    case MessageError::kBadVersion: return "bad_version";
    case MessageError::kReplyFlag: return "reply_flag_on_request";
    case MessageError::kUnknownRequest: return "unknown_request";
    case MessageError::kPayloadTooLarge: return "payload_too_large";
    case MessageError::kPayloadSize: return "payload_size";
    case MessageError::kFdCount: return "fd_count";
    case MessageError::kVringIndex: return "vring_index";
    case MessageError::kVringNum: return "vring_num";
    case MessageError::kRegionCount: return "region_count";
    case MessageError::kRegionRange: return "region_range";
    case MessageError::kCount: break;
  }
  return "unknown";
}

namespace {

template <typename T>
T read_pod(std::span<const std::byte> p, std::size_t offset = 0) {
  T v;
  std::memcpy(&v, p.data() + offset, sizeof v);
  return v;
}

}  // namespace

sys::Result<Message, MessageError> decode(const Header& header, std::span<const std::byte> payload,
                                          std::vector<sys::Fd> fds) {
  using sys::Unexpected;
  // `fds` is owned here: every early return closes them.
  if ((header.flags & kFlagVersionMask) != kVersion) return Unexpected(MessageError::kBadVersion);
  if (header.flags & kFlagReply) return Unexpected(MessageError::kReplyFlag);
  if (header.size > kMaxPayloadBytes) return Unexpected(MessageError::kPayloadTooLarge);
  if (payload.size() != header.size) return Unexpected(MessageError::kPayloadSize);
  const Shape shape = shape_of(header.request);
  if (shape == Shape::kUnsupported) return Unexpected(MessageError::kUnknownRequest);

  Message m{static_cast<Request>(header.request), (header.flags & kFlagNeedReply) != 0, std::monostate{}, {}};
  auto exactly = [&](std::size_t bytes, std::size_t nfds) -> std::optional<MessageError> {
    if (payload.size() != bytes) return MessageError::kPayloadSize;
    if (fds.size() != nfds) return MessageError::kFdCount;
    return std::nullopt;
  };
  switch (shape) {
    case Shape::kNone:
      if (auto e = exactly(0, 0)) return Unexpected(*e);
      break;
    case Shape::kU64:
      if (auto e = exactly(8, 0)) return Unexpected(*e);
      m.payload = read_pod<std::uint64_t>(payload);
      break;
    case Shape::kState: {
      if (auto e = exactly(sizeof(VringState), 0)) return Unexpected(*e);
      const auto s = read_pod<VringState>(payload);
      if (s.index >= kMaxQueues) return Unexpected(MessageError::kVringIndex);
      if (m.request == Request::kSetVringNum && (s.num == 0 || s.num > 32768 || (s.num & (s.num - 1)) != 0))
        return Unexpected(MessageError::kVringNum);
      if (m.request == Request::kSetVringBase && s.num > 0xffff) return Unexpected(MessageError::kVringNum);
      if (m.request == Request::kSetVringEnable && s.num > 1) return Unexpected(MessageError::kVringNum);
      m.payload = s;
      break;
    }
    case Shape::kAddr: {
      if (auto e = exactly(sizeof(VringAddr), 0)) return Unexpected(*e);
      const auto a = read_pod<VringAddr>(payload);
      if (a.index >= kMaxQueues) return Unexpected(MessageError::kVringIndex);
      m.payload = a;
      break;
    }
    case Shape::kMemTable: {
      if (payload.size() < 8) return Unexpected(MessageError::kPayloadSize);
      const auto n = read_pod<std::uint32_t>(payload);  // full width, before any narrowing
      if (n == 0 || n > kMaxMemRegions) return Unexpected(MessageError::kRegionCount);
      if (auto e = exactly(8 + std::size_t{n} * sizeof(MemRegion), n)) return Unexpected(*e);
      MemTable t;
      for (std::size_t i = 0; i < n; ++i) {
        const auto r = read_pod<MemRegion>(payload, 8 + i * sizeof(MemRegion));
        if (r.memory_size == 0 || r.guest_phys_addr + r.memory_size < r.guest_phys_addr ||
            r.userspace_addr + r.memory_size < r.userspace_addr || r.mmap_offset + r.memory_size < r.mmap_offset)
          return Unexpected(MessageError::kRegionRange);
        t.regions.push_back(r);
      }
      m.payload = std::move(t);
      break;
    }
    case Shape::kVringFile: {
      if (payload.size() != 8) return Unexpected(MessageError::kPayloadSize);
      const auto v = read_pod<std::uint64_t>(payload);
      if ((v & ~(kVringIndexMask | kVringNoFd)) != 0 || (v & kVringIndexMask) >= kMaxQueues)
        return Unexpected(MessageError::kVringIndex);
      const bool has_fd = (v & kVringNoFd) == 0;
      if (fds.size() != (has_fd ? 1u : 0u)) return Unexpected(MessageError::kFdCount);
      m.payload = VringFile{static_cast<std::uint32_t>(v & kVringIndexMask), has_fd};
      break;
    }
    case Shape::kUnsupported:
      return Unexpected(MessageError::kUnknownRequest);
  }
  m.fds = std::move(fds);
  return m;
}

namespace {
std::vector<std::byte> reply(Request request, const void* payload, std::uint32_t size) {
  std::vector<std::byte> out(kHeaderBytes + size);
  const Header h{static_cast<std::uint32_t>(request), kVersion | kFlagReply, size};
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + kHeaderBytes, payload, size);
  return out;
}
}  // namespace

std::vector<std::byte> encode_reply(Request request, std::uint64_t value) { return reply(request, &value, 8); }
std::vector<std::byte> encode_reply(Request request, const VringState& state) {
  return reply(request, &state, sizeof state);
}

}  // namespace vswitch::endpoints::vhost_user
