#include "shm/region.hpp"

#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

namespace bip = boost::interprocess;

namespace vswitch::shm {

std::string_view to_string(AttachError e) {
  switch (e) {
    case AttachError::kNotFound: return "not found";
    case AttachError::kOpenFailed: return "open failed";
    case AttachError::kTooSmall: return "object smaller than a region header";
    case AttachError::kNotInitialised: return "creator has not finished initialising it";
    case AttachError::kBadMagic: return "bad magic";
    case AttachError::kBadVersion: return "unsupported layout version";
    case AttachError::kBadHeaderSize: return "bad header size";
    case AttachError::kBadRegionSize: return "header size field disagrees with the object size";
    case AttachError::kBadPayloadBounds: return "payload outside the region";
    case AttachError::kBadKind: return "wrong region kind";
    case AttachError::kGenerationMismatch: return "generation mismatch (stale region)";
    case AttachError::kBadReservedField: return "reserved field not zero";
    case AttachError::kMapFailed: return "mmap failed";
  }
  return "unknown";
}

struct Region::Mapping {
  bip::mapped_region region;
};

namespace {

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

RegionError err(AttachError code, const std::string& name, const std::string& what) {
  return RegionError{code, "shm region " + name + ": " + std::string(to_string(code)) +
                               (what.empty() ? "" : " (" + what + ")")};
}

}  // namespace

sys::Status<RegionError> validate_header(const RegionHeader& h, std::uint64_t object_bytes,
                                         RegionKind kind, std::uint64_t expected_generation,
                                         const std::string& name) {
  using sys::Unexpected;
  if (h.magic == 0) return Unexpected{err(AttachError::kNotInitialised, name, "")};
  if (h.magic != kRegionMagic)
    return Unexpected{err(AttachError::kBadMagic, name, "found " + hex(h.magic))};
  if (h.layout_version != kRegionLayoutVersion)
    return Unexpected{err(AttachError::kBadVersion, name,
                          "found " + std::to_string(h.layout_version) + ", expected " +
                              std::to_string(kRegionLayoutVersion))};
  if (h.header_bytes != sizeof(RegionHeader))
    return Unexpected{err(AttachError::kBadHeaderSize, name, "found " + std::to_string(h.header_bytes))};
  if (h.region_bytes != object_bytes)
    return Unexpected{err(AttachError::kBadRegionSize, name,
                          "header says " + std::to_string(h.region_bytes) + ", object has " +
                              std::to_string(object_bytes))};
  if (h.payload_offset != Region::payload_offset() || h.payload_bytes > h.region_bytes ||
      h.payload_offset > h.region_bytes - h.payload_bytes ||
      h.payload_offset + h.payload_bytes != h.region_bytes)
    return Unexpected{err(AttachError::kBadPayloadBounds, name,
                          "offset " + std::to_string(h.payload_offset) + " bytes " +
                              std::to_string(h.payload_bytes))};
  if (h.kind != static_cast<std::uint32_t>(kind))
    return Unexpected{err(AttachError::kBadKind, name,
                          "found " + std::to_string(h.kind) + ", expected " +
                              std::to_string(static_cast<std::uint32_t>(kind)))};
  if (h.reserved != 0 || h.reserved2 != 0)
    return Unexpected{err(AttachError::kBadReservedField, name, "")};
  if (expected_generation != 0 && h.generation != expected_generation)
    return Unexpected{err(AttachError::kGenerationMismatch, name,
                          "found " + std::to_string(h.generation) + ", expected " +
                              std::to_string(expected_generation))};
  return {};
}

Region::Region(std::string name, std::unique_ptr<Mapping> mapping, std::span<std::byte> payload,
               std::uint64_t generation, bool owner, bool read_only)
    : name_(std::move(name)), mapping_(std::move(mapping)), payload_(payload),
      generation_(generation), owner_(owner), read_only_(read_only) {}

Region::Region(Region&& o) noexcept
    : name_(std::move(o.name_)), mapping_(std::move(o.mapping_)), payload_(o.payload_),
      generation_(o.generation_), owner_(std::exchange(o.owner_, false)), read_only_(o.read_only_) {}

Region& Region::operator=(Region&& o) noexcept {
  if (this != &o) {
    if (owner_) bip::shared_memory_object::remove(name_.c_str());
    name_ = std::move(o.name_);
    mapping_ = std::move(o.mapping_);
    payload_ = o.payload_;
    generation_ = o.generation_;
    owner_ = std::exchange(o.owner_, false);
    read_only_ = o.read_only_;
  }
  return *this;
}

Region::~Region() {
  if (owner_) bip::shared_memory_object::remove(name_.c_str());
}

bool Region::remove(const std::string& name) {
  return bip::shared_memory_object::remove(name.c_str());
}

sys::Status<std::string> Region::rename_to(const std::string& name) {
  if (!owner_ || name.size() < 2 || name[0] != '/' || name.find('/', 1) != std::string::npos)
    return sys::Unexpected{"shm region " + name_ + ": cannot be renamed to " + name};
  // glibc's shm_open opens /dev/shm/<name without its slash>; Boost.Interprocess uses it.
  const std::string from = "/dev/shm" + name_;
  const std::string to = "/dev/shm" + name;
  if (::rename(from.c_str(), to.c_str()) != 0)
    return sys::Unexpected{"shm region " + name_ + ": rename to " + name + ": " + std::strerror(errno)};
  name_ = name;
  return {};
}

sys::Result<Region, RegionCreateError> Region::create(const std::string& name, RegionKind kind,
                                                      std::uint64_t payload_bytes,
                                                      std::uint64_t generation) {
  using sys::Unexpected;
  constexpr std::uint64_t kMaxRegion = std::uint64_t{1} << 40;
  if (payload_bytes > kMaxRegion)
    return Unexpected{RegionCreateError{CreateError::kTooLarge,
                                        "shm region " + name + ": payload of " +
                                            std::to_string(payload_bytes) + " bytes is too large"}};
  const std::uint64_t total = payload_offset() + payload_bytes;
  try {
    bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write,
                                  bip::permissions(0600));
    shm.truncate(static_cast<bip::offset_t>(total));
    auto mapping = std::make_unique<Mapping>(Mapping{bip::mapped_region(shm, bip::read_write)});
    auto* base = static_cast<std::byte*>(mapping->region.get_address());
    RegionHeader h{};
    h.magic = 0;  // published last by publish_ready()
    h.layout_version = kRegionLayoutVersion;
    h.header_bytes = sizeof(RegionHeader);
    h.region_bytes = total;
    h.payload_offset = payload_offset();
    h.payload_bytes = payload_bytes;
    h.generation = generation;
    h.kind = static_cast<std::uint32_t>(kind);
    std::memcpy(base, &h, sizeof h);
    return Region(name, std::move(mapping),
                  std::span<std::byte>(base + payload_offset(), payload_bytes), generation, true);
  } catch (const bip::interprocess_exception& e) {
    const bool exists = e.get_error_code() == bip::already_exists_error;
    // A failed truncate or map leaves the name behind; remove it unless someone else owns it.
    if (!exists) bip::shared_memory_object::remove(name.c_str());
    return Unexpected{RegionCreateError{exists ? CreateError::kExists : CreateError::kCreateFailed,
                                        "shm region " + name + ": " + e.what()}};
  }
}

void Region::publish_ready() noexcept {
  auto* base = payload_.data() - payload_offset();
  // [R0] everything the creator wrote (header fields and the payload's own initial
  //      state) is visible before the magic. Pairs with [A0] in attach().
  std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base))
      .store(kRegionMagic, std::memory_order_release);
}

void Region::restamp(RegionKind kind) noexcept {
  auto* base = payload_.data() - payload_offset();
  RegionHeader h{};
  h.magic = kRegionMagic;
  h.layout_version = kRegionLayoutVersion;
  h.header_bytes = sizeof(RegionHeader);
  h.region_bytes = payload_offset() + payload_.size();
  h.payload_offset = payload_offset();
  h.payload_bytes = payload_.size();
  h.generation = generation_;
  h.kind = static_cast<std::uint32_t>(kind);
  std::uint64_t words[sizeof h / 8];
  std::memcpy(words, &h, sizeof h);
  // Word by word (readers may look at any time), the magic last: [R0], as publish_ready,
  // pairs with [A0] in attach().
  for (std::size_t i = 1; i < sizeof h / 8; ++i)
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base + 8 * i)).store(words[i], std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base)).store(words[0], std::memory_order_release);
}

sys::Result<Region, RegionError> Region::attach(const std::string& name, RegionKind kind,
                                                std::uint64_t expected_generation, Access access) {
  using sys::Unexpected;
  // Read-only: O_RDONLY and PROT_READ (Boost maps read_only as a shared, read-only mapping).
  const bip::mode_t mode = access == Access::kReadOnly ? bip::read_only : bip::read_write;
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), mode);
    bip::offset_t size = 0;
    if (!shm.get_size(size) || size < 0)
      return Unexpected{err(AttachError::kOpenFailed, name, "cannot read its size")};
    const auto object_bytes = static_cast<std::uint64_t>(size);
    if (object_bytes < sizeof(RegionHeader))
      return Unexpected{err(AttachError::kTooSmall, name, std::to_string(object_bytes) + " bytes")};
    auto mapping = std::make_unique<Mapping>(Mapping{bip::mapped_region(shm, mode)});
    auto* base = static_cast<std::byte*>(mapping->region.get_address());
    if (mapping->region.get_size() != object_bytes)
      return Unexpected{err(AttachError::kMapFailed, name, "mapped size differs from object size")};
    RegionHeader h{};
    // [A0] acquire the magic, then copy the header once. Pairs with [R0] in publish_ready().
    h.magic = std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(base))
                  .load(std::memory_order_acquire);
    std::memcpy(reinterpret_cast<std::byte*>(&h) + sizeof h.magic, base + sizeof h.magic,
                sizeof h - sizeof h.magic);
    if (auto ok = validate_header(h, object_bytes, kind, expected_generation, name); !ok)
      return Unexpected{ok.error()};
    return Region(name, std::move(mapping),
                  std::span<std::byte>(base + h.payload_offset, h.payload_bytes), h.generation,
                  false, access == Access::kReadOnly);
  } catch (const bip::interprocess_exception& e) {
    const bool missing = e.get_error_code() == bip::not_found_error;
    return Unexpected{err(missing ? AttachError::kNotFound : AttachError::kOpenFailed, name, e.what())};
  }
}

sys::Result<Region, RegionError> Region::attach_sized(const std::string& name, std::uint64_t region_bytes,
                                                      std::uint64_t generation) {
  using sys::Unexpected;
  if (region_bytes < payload_offset())
    return Unexpected{err(AttachError::kTooSmall, name, "asked for " + std::to_string(region_bytes) + " bytes")};
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_write);
    bip::offset_t size = 0;
    if (!shm.get_size(size) || size < 0)
      return Unexpected{err(AttachError::kOpenFailed, name, "cannot read its size")};
    if (static_cast<std::uint64_t>(size) != region_bytes)
      return Unexpected{err(AttachError::kBadRegionSize, name,
                            "object has " + std::to_string(size) + " bytes, expected " + std::to_string(region_bytes))};
    auto mapping = std::make_unique<Mapping>(Mapping{bip::mapped_region(shm, bip::read_write)});
    auto* base = static_cast<std::byte*>(mapping->region.get_address());
    if (mapping->region.get_size() != region_bytes)
      return Unexpected{err(AttachError::kMapFailed, name, "mapped size differs from object size")};
    // The descriptor closes here (shm goes out of scope): this process keeps the mapping
    // only, and cannot resize the object under the others.
    return Region(name, std::move(mapping), std::span<std::byte>(base + payload_offset(), region_bytes - payload_offset()),
                  generation, false, false);
  } catch (const bip::interprocess_exception& e) {
    const bool missing = e.get_error_code() == bip::not_found_error;
    return Unexpected{err(missing ? AttachError::kNotFound : AttachError::kOpenFailed, name, e.what())};
  }
}

}  // namespace vswitch::shm
