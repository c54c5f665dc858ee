// Backend: the vhost-user back-end state of one virtio-net device: negotiated features,
// the guest's memory (mapped from the front-end's fds after checking each against the
// file's real size), and two split queues (0 = RX, 1 = TX) built only from validated
// addresses. handle() runs one decoded message and says what to reply; an error means the
// front-end broke the protocol and the connection is closed (the endpoint keeps running
// and waits for the front-end to come back).
//
// A queue runs once it has a size, addresses, a kick descriptor and (with
// PROTOCOL_FEATURES) has been enabled; GET_VRING_BASE stops it and reports where it is,
// and a new SET_MEM_TABLE or SET_VRING_ADDR stops and rebuilds it from scratch.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "endpoints/vhost_user/message.hpp"
#include "endpoints/virtio/guest_memory.hpp"
#include "endpoints/virtio/split_queue.hpp"
#include "shm/sys/fd.hpp"
#include "shm/sys/result.hpp"

namespace vswitch::endpoints::vhost_user {

// Feature bits (virtio 1.x 5.1.3, 6).
inline constexpr std::uint64_t kFeatureCsum = 1ull << 0;
inline constexpr std::uint64_t kFeatureGuestCsum = 1ull << 1;
inline constexpr std::uint64_t kFeatureMtu = 1ull << 3;  // the device reports the guest's MTU
inline constexpr std::uint64_t kFeatureGuestTso4 = 1ull << 7;
inline constexpr std::uint64_t kFeatureGuestTso6 = 1ull << 8;
inline constexpr std::uint64_t kFeatureGuestEcn = 1ull << 9;
inline constexpr std::uint64_t kFeatureHostTso4 = 1ull << 11;
inline constexpr std::uint64_t kFeatureHostTso6 = 1ull << 12;
inline constexpr std::uint64_t kFeatureHostEcn = 1ull << 13;
inline constexpr std::uint64_t kFeatureMrgRxbuf = 1ull << 15;
inline constexpr std::uint64_t kFeatureIndirectDesc = 1ull << 28;
inline constexpr std::uint64_t kFeatureEventIdx = 1ull << 29;
inline constexpr std::uint64_t kFeatureProtocolFeatures = 1ull << 30;
inline constexpr std::uint64_t kFeatureVersion1 = 1ull << 32;
inline constexpr std::uint64_t kProtocolReplyAck = 1ull << 3;
inline constexpr std::uint64_t kProtocolNetMtu = 1ull << 4;  // NET_SET_MTU

inline constexpr std::uint64_t kOfferedFeatures =
    kFeatureCsum | kFeatureGuestCsum | kFeatureMtu | kFeatureGuestTso4 | kFeatureGuestTso6 | kFeatureGuestEcn |
    kFeatureHostTso4 | kFeatureHostTso6 | kFeatureHostEcn | kFeatureMrgRxbuf | kFeatureIndirectDesc |
    kFeatureEventIdx | kFeatureProtocolFeatures | kFeatureVersion1;
inline constexpr std::uint64_t kOfferedProtocolFeatures = kProtocolReplyAck | kProtocolNetMtu;

// The MTUs a front-end may set (NET_SET_MTU): IPv4's smallest datagram every module must
// forward (RFC 791: 68 octets) up to the switch port's own MTU.
inline constexpr std::uint32_t kMinGuestMtu = 68;
inline constexpr std::uint32_t kMaxGuestMtu = 65535;

// virtio 1.x 2.6 (Split Virtqueues): "Queue Size value is always a power of 2. The
// maximum Queue Size value is 32768."
inline constexpr std::uint16_t kMaxSplitQueueSize = 32768;

// The most guest memory one front-end may have mapped (the sum of its regions' mappings)
// unless the endpoint is told otherwise: a VMM cannot make the switch map more than this.
inline constexpr std::uint64_t kDefaultMaxGuestMemory = std::uint64_t{64} << 30;  // 64 GiB

inline constexpr std::uint32_t kRxQueue = 0;
inline constexpr std::uint32_t kTxQueue = 1;

class Backend {
 public:
  // Accepts rings of at most `max_queue_size` entries (a power of two; default: every
  // size the spec allows for a split ring), at most `max_guest_memory` bytes of mapped
  // guest memory, and a guest MTU of at most `max_mtu` (the switch port's).
  explicit Backend(std::uint16_t max_queue_size = kMaxSplitQueueSize,
                   std::uint64_t max_guest_memory = kDefaultMaxGuestMemory, std::uint32_t max_mtu = kMaxGuestMtu)
      : max_queue_size_(max_queue_size), max_guest_memory_(max_guest_memory), max_mtu_(max_mtu) {}
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  struct Outcome {
    std::optional<std::vector<std::byte>> reply;
    bool queues_changed = false;  // a queue started or stopped, or a kick/call fd changed
    std::string notice;           // worth a line in the endpoint's log (an MTU set or refused)
  };
  [[nodiscard]] sys::Result<Outcome, std::string> handle(Message message);

  // The queue, if it is running.
  [[nodiscard]] virtio::SplitQueue* queue(std::uint32_t index) noexcept;
  [[nodiscard]] bool running(std::uint32_t index) const noexcept {
    return index < kMaxQueues && vrings_[index].queue.has_value();
  }
  [[nodiscard]] int kick_fd(std::uint32_t index) const noexcept { return vrings_[index].kick.get(); }
  [[nodiscard]] int call_fd(std::uint32_t index) const noexcept { return vrings_[index].call.get(); }
  [[nodiscard]] std::uint64_t features() const noexcept { return features_; }
  [[nodiscard]] bool has(std::uint64_t feature) const noexcept { return (features_ & feature) != 0; }
  // The MTU the front-end gave its guest (NET_SET_MTU, accepted), or 0: none.
  [[nodiscard]] std::uint32_t mtu() const noexcept { return mtu_; }
  // Stops both queues and forgets the guest (the front-end went away).
  void reset();
  // The first region (its index in the memory table) whose file lost its pages under the
  // mapping (a SIGBUS the guard repaired, see sigbus_guard.hpp): whatever was read from it
  // since may be zeros. Nothing when every region is whole.
  [[nodiscard]] std::optional<std::size_t> lost_region() const noexcept;

 private:
  struct Mapping {
    void* base = nullptr;
    std::size_t length = 0;  // whole pages of the file's page size (a huge page on hugetlbfs)
    std::uint32_t guard = 0;  // its slot in the SIGBUS guard's table
    std::uint64_t userspace_addr = 0;  // the front-end's address of the region
    std::uint64_t guest_phys_addr = 0;
    std::uint64_t size = 0;
    std::byte* host = nullptr;  // base + mmap_offset
  };
  struct Vring {
    std::uint16_t num = 0;
    std::uint16_t base = 0;
    std::optional<VringAddr> addr;
    sys::Fd kick;
    sys::Fd call;
    sys::Fd err;
    bool enabled = false;
    std::optional<virtio::SplitQueue> queue;
  };

  // A step of handle(): an error means the front-end broke the protocol.
  using Step = sys::Status<std::string>;
  Step set_features(std::uint64_t features, Outcome& out);
  Step set_mem_table(const MemTable& table, std::vector<sys::Fd>& fds, Outcome& out);
  Step set_vring_state(Request request, const VringState& state, Outcome& out);  // NUM, BASE, GET_BASE, ENABLE
  Step set_vring_addr(const VringAddr& addr, Outcome& out);
  Step set_vring_file(Request request, const VringFile& file, std::vector<sys::Fd>& fds, Outcome& out);  // KICK, CALL, ERR
  // Maps the front-end's memory (every queue stops first).
  Step map_mem_table(const MemTable& table, std::vector<sys::Fd>& fds);
  // Whether the table may be mapped at all: within max_guest_memory_, each file able to
  // hold its region now and unable to shrink later where the kernel lets it say so.
  Step check_mem_table(const MemTable& table, const std::vector<sys::Fd>& fds) const;
  std::optional<std::uint64_t> to_guest_phys(std::uint64_t user_addr) const noexcept;
  // (Re)builds a queue when everything it needs is there (if not, it stays stopped).
  Step start_if_ready(std::uint32_t index);
  void stop(std::uint32_t index);
  void unmap_all();

  std::uint16_t max_queue_size_;
  std::uint64_t max_guest_memory_;
  std::uint32_t max_mtu_;
  std::uint32_t mtu_ = 0;
  std::uint64_t features_ = 0;
  std::uint64_t protocol_features_ = 0;
  std::vector<Mapping> mappings_;
  std::optional<virtio::GuestMemory> memory_;
  std::array<Vring, kMaxQueues> vrings_;
};

}  // namespace vswitch::endpoints::vhost_user
