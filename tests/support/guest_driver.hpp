// A guest driver in-process, for tests of the device side of a split virtqueue: it owns a
// block of "guest memory" (gpa base.., kBase unless told), lays out the descriptor table and the rings the
// way the Linux driver does, and plays the driver's part of the protocol.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "endpoints/virtio/guest_memory.hpp"
#include "endpoints/virtio/split_queue.hpp"

namespace vswitch::test {

using endpoints::virtio::Descriptor;
using endpoints::virtio::GuestRegion;

class GuestDriver {
 public:
  static constexpr std::uint64_t kBase = 0x100000;

  // Guest RAM on the heap, or (shared = true) in a memfd, as QEMU's memory-backend-memfd
  // gives it, so it can be handed to a vhost-user back-end. Two drivers with disjoint
  // `base` ranges are two regions of one guest's memory (e.g. its RX and TX queues).
  // A shared memfd is sealed against growing and shrinking, as QEMU's seal=on default does,
  // unless `sealed` is false. With `tmpfs_file`, shared RAM is an (unlinked) file in
  // /dev/shm instead, as QEMU's memory-backend-file with mem-path=/dev/shm/... gives it:
  // a file that cannot be sealed, which its owner may truncate under every mapping.
  GuestDriver(std::uint16_t size, bool event_idx, std::size_t bytes = 1 << 20, bool shared = false,
              std::uint64_t base = kBase, bool sealed = true, bool tmpfs_file = false)
      : base_(base), size_(size), bytes_(bytes), mem_(nullptr, Free{0}) {
    if (shared) {
      if (tmpfs_file) {
        char path[] = "/dev/shm/vswitch-test-guest-ram-XXXXXX";
        memfd_ = ::mkostemp(path, O_CLOEXEC);
        if (memfd_ >= 0) ::unlink(path);
      } else {
        memfd_ = ::memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
      }
      if (memfd_ < 0 || ::ftruncate(memfd_, static_cast<off_t>(bytes)) != 0) throw std::bad_alloc();
      if (sealed && !tmpfs_file && ::fcntl(memfd_, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
        throw std::bad_alloc();
      void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      mem_.reset(static_cast<std::byte*>(p));
      mem_.get_deleter().mapped = bytes;
    } else {
      mem_.reset(new (std::align_val_t(4096)) std::byte[bytes]);
    }
    std::memset(mem_.get(), 0, bytes);
    layout_.size = size;
    layout_.event_idx = event_idx;
    layout_.desc_gpa = alloc(16u * size, 16);
    layout_.avail_gpa = alloc(6u + 2u * size, 2);
    layout_.used_gpa = alloc(6u + 8u * size, 4);
  }

  [[nodiscard]] GuestRegion region() const { return GuestRegion{base_, bytes_, mem_.get()}; }
  [[nodiscard]] std::uint64_t base() const { return base_; }
  [[nodiscard]] const endpoints::virtio::QueueLayout& layout() const { return layout_; }

  std::uint64_t alloc(std::size_t n, std::size_t align = 16) {
    next_ = (next_ + align - 1) / align * align;
    const std::uint64_t gpa = base_ + next_;
    next_ += n;
    if (next_ > bytes_) throw std::bad_alloc();
    return gpa;
  }
  std::byte* host(std::uint64_t gpa) { return mem_.get() + (gpa - base_); }
  // The memfd (or tmpfs file) that holds shared RAM.
  [[nodiscard]] int memfd() const { return memfd_; }
  [[nodiscard]] std::size_t bytes() const { return bytes_; }
  ~GuestDriver() {
    if (memfd_ >= 0) ::close(memfd_);
  }
  GuestDriver(const GuestDriver&) = delete;
  GuestDriver& operator=(const GuestDriver&) = delete;

  void set_desc(std::uint16_t i, Descriptor d) { std::memcpy(host(layout_.desc_gpa) + 16u * i, &d, 16); }
  // Writes an indirect table at a fresh address; returns its gpa.
  std::uint64_t indirect_table(const std::vector<Descriptor>& entries) {
    const std::uint64_t gpa = alloc(16 * entries.size(), 16);
    std::memcpy(host(gpa), entries.data(), 16 * entries.size());
    return gpa;
  }
  // Puts `head` in the next avail slot and publishes it (release, as virtio_wmb + store).
  void make_available(std::uint16_t head) {
    std::memcpy(host(layout_.avail_gpa) + 4 + 2u * (avail_idx_ & (size_ - 1)), &head, 2);
    ++avail_idx_;
    word(layout_.avail_gpa + 2).store(avail_idx_, std::memory_order_release);
  }
  void set_avail_idx(std::uint16_t v) {
    avail_idx_ = v;
    word(layout_.avail_gpa + 2).store(v, std::memory_order_release);
  }
  void set_avail_flags(std::uint16_t f) { word(layout_.avail_gpa).store(f); }
  void set_used_event(std::uint16_t v) { word(layout_.avail_gpa + 4 + 2u * size_).store(v); }
  std::uint16_t used_idx() { return word(layout_.used_gpa + 2).load(std::memory_order_acquire); }
  std::uint16_t used_flags() { return word(layout_.used_gpa).load(); }
  std::uint16_t avail_event() { return word(layout_.used_gpa + 4 + 8u * size_).load(); }
  struct UsedElem {
    std::uint32_t id, len;
  };
  UsedElem used(std::uint16_t i) {
    UsedElem e;
    std::memcpy(&e, host(layout_.used_gpa) + 4 + 8u * (i & (size_ - 1)), 8);
    return e;
  }

 private:
  std::atomic_ref<std::uint16_t> word(std::uint64_t gpa) {
    return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(host(gpa)));
  }
  struct Free {
    std::size_t mapped;  // non-zero: an mmap of the memfd
    void operator()(std::byte* p) const {
      if (mapped != 0) ::munmap(p, mapped);
      else ::operator delete[](p, std::align_val_t(4096));
    }
  };
  std::uint64_t base_;
  std::uint16_t size_;
  std::size_t bytes_;
  std::unique_ptr<std::byte[], Free> mem_;
  int memfd_ = -1;
  std::size_t next_ = 0;
  std::uint16_t avail_idx_ = 0;
  endpoints::virtio::QueueLayout layout_;
};

}  // namespace vswitch::test
