// Region: a named POSIX shared-memory object (Boost.Interprocess), mode 0600, that starts
// with a RegionHeader. The creator owns the name and unlinks it on destruction; attach()
// validates every header field against the object's real size before it forms any
// pointer into the mapping, and fails with a message that says what is wrong.
//
// A process that only observes (vswitchctl) attaches with Access::kReadOnly: the object is
// opened O_RDONLY and mapped PROT_READ, so no bug in the observer can change a ring index,
// a counter or a header the switch relies on; a store into such a payload faults.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shm/sys/result.hpp"

namespace vswitch::shm {

inline constexpr std::uint64_t kRegionMagic = 0x314e484353575356ULL;  // "VSWSCHN1" little-endian
inline constexpr std::uint32_t kRegionLayoutVersion = 1;

// What a region holds after its header; a mismatch is an attach error, so a stats object
// can never be mistaken for a channel, nor the daemon's stats object for an endpoint's
// slice. 2 was the stats region before it was split into the daemon's object and one
// slice per endpoint: never reused, so an object of that layout is refused by kind.
enum class RegionKind : std::uint32_t { kChannel = 1, kStats = 3, kStatsSlice = 4, kCapture = 5, kTopology = 6 };

// Bit-for-bit the first 64 bytes of every region. Written once by the creator, magic
// last ([R0]); read once by attach() into a local copy ([A0]) that is then validated.
struct RegionHeader {
  std::uint64_t magic;           // kRegionMagic, stored last with release by the creator
  std::uint32_t layout_version;  // kRegionLayoutVersion
  std::uint32_t header_bytes;    // sizeof(RegionHeader)
  std::uint64_t region_bytes;    // total size of the object, header included
  std::uint64_t payload_offset;  // where the kind-specific area starts (64-aligned)
  std::uint64_t payload_bytes;   // its size; payload_offset + payload_bytes == region_bytes
  std::uint64_t generation;      // chosen by the creator; tells a re-created region from a stale one
  std::uint32_t kind;            // RegionKind
  std::uint32_t reserved;        // zero
  std::uint64_t reserved2;       // zero
};
static_assert(sizeof(RegionHeader) == 64);
static_assert(std::is_trivially_copyable_v<RegionHeader>);

enum class AttachError : std::uint8_t {
  kNotFound,
  kOpenFailed,
  kTooSmall,
  kNotInitialised,  // magic still zero: the creator has not finished
  kBadMagic,
  kBadVersion,
  kBadHeaderSize,
  kBadRegionSize,
  kBadPayloadBounds,
  kBadKind,
  kGenerationMismatch,
  kBadReservedField,
  kMapFailed,
};
std::string_view to_string(AttachError e);

struct RegionError {
  AttachError code;
  std::string detail;  // names the region and the offending values
};

// How attach() maps a region: read-write for the switch's own processes, read-only for
// an observer.
enum class Access : std::uint8_t { kReadWrite, kReadOnly };

enum class CreateError : std::uint8_t { kExists, kCreateFailed, kTooLarge };
struct RegionCreateError {
  CreateError code;
  std::string detail;
};

class Region {
 public:
  // Creates `name` (must start with '/'), sized for a payload of payload_bytes, mode 0600.
  // Fails if it already exists: two switches never share a name by accident.
  [[nodiscard]] static sys::Result<Region, RegionCreateError> create(const std::string& name,
                                                                     RegionKind kind,
                                                                     std::uint64_t payload_bytes,
                                                                     std::uint64_t generation);
  // Maps an existing region after validating its header. expected_generation == 0 accepts any.
  // With Access::kReadOnly the payload may only be read: a store into it faults.
  [[nodiscard]] static sys::Result<Region, RegionError> attach(const std::string& name,
                                                               RegionKind kind,
                                                               std::uint64_t expected_generation = 0,
                                                               Access access = Access::kReadWrite);
  // For a process the creator started and told the name and the size (an endpoint program
  // vswitchd execs): maps `name` read-write after checking only that the object is exactly
  // `region_bytes` long, which only the object's owner can change. Nothing is read from the
  // header: every process that maps the region read-write can write it, and a peer that
  // wrote a bad field there must not keep this process from ever attaching again.
  [[nodiscard]] static sys::Result<Region, RegionError> attach_sized(const std::string& name,
                                                                     std::uint64_t region_bytes,
                                                                     std::uint64_t generation);
  // Removes a name left behind (e.g. by a crashed creator). Returns whether one existed.
  static bool remove(const std::string& name);
  // Only for the creator: gives the object the name `name` (which must start with '/'),
  // replacing in one step an object that had it (rename(2) in /dev/shm, where Linux keeps
  // POSIX shared memory): a reader opens either the old object or this one, never neither.
  // This object owns the new name from then on. Mappings of either object stay valid.
  [[nodiscard]] sys::Status<std::string> rename_to(const std::string& name);

  Region(Region&&) noexcept;
  Region& operator=(Region&&) noexcept;
  ~Region();

  // Only for the creator: writes magic last, making the region attachable ([R0]).
  void publish_ready() noexcept;
  // Only for the creator, of an object no other process writes any more: every header
  // field written again as create() wrote it (whatever a process that mapped it read-write
  // left there), then the magic ([R0]).
  void restamp(RegionKind kind) noexcept;
  // This object will never unlink the name: its destructor (and a move-assignment over it)
  // only unmaps. For a process that inherited the creator's Region by fork(): the object
  // belongs to the creator, and a child that drops its copy must leave it in place.
  void disown() noexcept { owner_ = false; }

  [[nodiscard]] std::span<std::byte> payload() const noexcept { return payload_; }
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] bool owner() const noexcept { return owner_; }
  [[nodiscard]] bool read_only() const noexcept { return read_only_; }

  static constexpr std::uint64_t payload_offset() noexcept { return 64; }

 private:
  struct Mapping;
  Region(std::string name, std::unique_ptr<Mapping> mapping, std::span<std::byte> payload,
         std::uint64_t generation, bool owner, bool read_only = false);
  std::string name_;
  std::unique_ptr<Mapping> mapping_;
  std::span<std::byte> payload_;
  std::uint64_t generation_ = 0;
  bool owner_ = false;
  bool read_only_ = false;
};

// Validates a header copy against the object's actual size. Pure: exposed for tests and
// fuzzing of the attach path without touching /dev/shm.
[[nodiscard]] sys::Status<RegionError> validate_header(const RegionHeader& h,
                                                       std::uint64_t object_bytes,
                                                       RegionKind kind,
                                                       std::uint64_t expected_generation,
                                                       const std::string& name);

}  // namespace vswitch::shm
