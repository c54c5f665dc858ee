// vhost-user messages (QEMU docs/interop/vhost-user.rst), checked at the boundary: a
// message is decoded only when its header, its payload size, its file descriptors and
// every range in it are what its request allows. Nothing downstream ever sees a raw
// payload, and every descriptor received travels inside the decoded Message (sys::Fd), so
// one the request does not consume is closed, never leaked (reliability-anchors bad-input
// classes 15 and 16). A bad message is an error for that connection only.
//
// Wire format (native byte order): u32 request, u32 flags (bits 0-1 version = 1, bit 2
// reply, bit 3 need_reply), u32 size, then `size` payload bytes; descriptors ride along as
// SCM_RIGHTS on the same sendmsg.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "shm/sys/fd.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::endpoints::vhost_user {

enum class Request : std::uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kSendRarp = 19,
  kNetSetMtu = 20,
  kGetConfig = 24,
  kSetConfig = 25,
  kResetDevice = 34,
  kGetMaxMemSlots = 36,
  kSetStatus = 39,
  kGetStatus = 40,
};
std::string_view to_string(Request r);

inline constexpr std::size_t kHeaderBytes = 12;
inline constexpr std::uint32_t kMaxPayloadBytes = 4096;
inline constexpr std::size_t kMaxFds = 8;
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint32_t kFlagVersionMask = 3;
inline constexpr std::uint32_t kFlagReply = 1u << 2;
inline constexpr std::uint32_t kFlagNeedReply = 1u << 3;
inline constexpr std::uint64_t kVringIndexMask = 0xff;
inline constexpr std::uint64_t kVringNoFd = 0x100;
inline constexpr std::uint32_t kMaxQueues = 2;  // one RX and one TX queue (no multiqueue)
inline constexpr std::size_t kMaxMemRegions = 8;

struct Header {
  std::uint32_t request;
  std::uint32_t flags;
  std::uint32_t size;
};
static_assert(sizeof(Header) == kHeaderBytes);

struct VringState {  // SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE
  std::uint32_t index;
  std::uint32_t num;
};
struct VringAddr {  // SET_VRING_ADDR: addresses in the front-end's (QEMU's) virtual address space
  std::uint32_t index;
  std::uint32_t flags;
  std::uint64_t desc_user_addr;
  std::uint64_t used_user_addr;
  std::uint64_t avail_user_addr;
  std::uint64_t log_guest_addr;
};
struct MemRegion {  // one region of SET_MEM_TABLE; its fd is Message::fds[i]
  std::uint64_t guest_phys_addr;
  std::uint64_t memory_size;
  std::uint64_t userspace_addr;
  std::uint64_t mmap_offset;
};
struct MemTable {
  std::vector<MemRegion> regions;
};
struct VringFile {  // SET_VRING_KICK/CALL/ERR: the fd (if any) is Message::fds[0]
  std::uint32_t index;
  bool has_fd;
};

using Payload = std::variant<std::monostate, std::uint64_t, VringState, VringAddr, MemTable, VringFile>;

struct Message {
  Request request;
  bool need_reply = false;
  Payload payload;
  std::vector<sys::Fd> fds;
};

enum class MessageError : std::uint8_t {
  kBadVersion,        // flags version is not 1
  kReplyFlag,         // a request from the front-end marked as a reply
  kUnknownRequest,    // not one this back-end implements
  kPayloadTooLarge,   // size > kMaxPayloadBytes
  kPayloadSize,       // size is not what the request's payload type takes
  kFdCount,           // more or fewer descriptors than the request carries
  kVringIndex,        // queue index >= kMaxQueues (checked in full width, before narrowing)
  kVringNum,          // queue size not a power of two in 1..32768
  kRegionCount,       // 0 or more than kMaxMemRegions regions
  kRegionRange,       // empty region, or address/offset + size wrapping 64 bits
  kCount,
};
std::string_view to_string(MessageError e);

// Decodes a message whose header and payload were read completely. `fds` are the
// descriptors that came with it; they end up in the Message or are closed.
[[nodiscard]] sys::Result<Message, MessageError> decode(const Header& header, std::span<const std::byte> payload,
                                                        std::vector<sys::Fd> fds);

// A reply to `request` carrying a u64 (GET_FEATURES, REPLY_ACK status...) or a VringState.
[[nodiscard]] std::vector<std::byte> encode_reply(Request request, std::uint64_t value);
[[nodiscard]] std::vector<std::byte> encode_reply(Request request, const VringState& state);

}  // namespace vswitch::endpoints::vhost_user
