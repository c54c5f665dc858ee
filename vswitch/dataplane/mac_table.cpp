#include "vswitch/dataplane/mac_table.hpp"

#include <algorithm>
#include <random>

namespace vswitch {

namespace {

std::size_t table_slots(std::uint32_t capacity) {
  std::size_t n = 16;
  while (n < std::size_t{capacity} * 2) n <<= 1;
  return n;
}

}  // namespace

MacTable::MacTable(const Config& config)
    : slots_(table_slots(config.capacity == 0 ? 1 : config.capacity)),
      mask_(slots_.size() - 1),
      capacity_(config.capacity == 0 ? 1 : config.capacity),
      aging_ms_(config.aging_ms),
      move_damping_ms_(config.move_damping_ms),
      seed_(config.seed != 0 ? config.seed : (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}()),
      max_per_port_(config.max_per_port != 0 ? config.max_per_port : std::max<std::uint32_t>(1, static_cast<std::uint32_t>(capacity_ / 4))),
      per_port_(config.ports, 0) {}

std::size_t MacTable::home(std::uint64_t key) const noexcept {
  std::uint64_t x = key ^ seed_;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<std::size_t>(x) & mask_;
}

std::optional<std::size_t> MacTable::find(const MacAddress& mac, std::uint16_t vlan) const noexcept {
  const std::uint64_t k = key(mac, vlan);
  for (std::size_t i = home(k);; i = (i + 1) & mask_) {
    if (!slots_[i].used) return std::nullopt;  // load <= 50%: an empty slot always ends the probe
    if (slots_[i].key == k) return i;
  }
}

bool MacTable::expired(const Slot& s, std::uint64_t now_ms) const noexcept {
  return !s.entry.is_static && aging_ms_ != 0 && now_ms - s.entry.last_seen_ms >= aging_ms_ &&
         now_ms >= s.entry.last_seen_ms;
}

void MacTable::erase_at(std::size_t i) noexcept {
  // Backward-shift deletion: pull later members of the probe run into the hole, so no
  // tombstones build up and every probe still ends at the first empty slot.
  slots_[i].used = false;
  --size_;
  ++changes_;
  if (!slots_[i].entry.is_static) --per_port_[slots_[i].entry.port];
  for (std::size_t j = (i + 1) & mask_; slots_[j].used; j = (j + 1) & mask_) {
    const std::size_t h = home(slots_[j].key);
    // Slot j may move to the hole i if its home is not in the cyclic range (i, j].
    const bool home_in_range = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (home_in_range) continue;
    slots_[i] = slots_[j];
    slots_[j].used = false;
    i = j;
  }
}

std::size_t MacTable::insert(const MacEntry& e) {
  const std::uint64_t k = key(e.mac, e.vlan);
  std::size_t i = home(k);
  while (slots_[i].used) i = (i + 1) & mask_;
  slots_[i] = Slot{e, k, 0, true};
  ++size_;
  ++changes_;
  if (!e.is_static) ++per_port_[e.port];
  return i;
}

bool MacTable::add_static(const MacAddress& mac, PortId port, std::uint16_t vlan) {
  if (mac.is_multicast() || mac.is_zero()) return false;
  if (auto i = find(mac, vlan)) {
    const MacEntry& was = slots_[*i].entry;
    if (!was.is_static) --per_port_[was.port];
    if (!was.is_static || was.port != port) ++changes_;  // made static, or moved to another port
    slots_[*i].entry = MacEntry{mac, port, vlan, true, 0};
    return true;
  }
  if (size_ >= capacity_) {
    // O(slots), only when the table is full: a static entry added while the switch runs
    // (a port moved to another VLAN) must not be left out for lack of room.
    std::size_t victim = slots_.size();
    for (std::size_t i = 0; i < slots_.size() && victim == slots_.size(); ++i)
      if (slots_[i].used && !slots_[i].entry.is_static) victim = i;
    if (victim == slots_.size()) return false;
    erase_at(victim);  // learned again from its next frame, if its port still holds it
    ++counters_.evicted_for_static;
  }
  insert(MacEntry{mac, port, vlan, true, 0});
  return true;
}

bool MacTable::remove_static(const MacAddress& mac, std::uint16_t vlan, PortId port) {
  const auto i = find(mac, vlan);
  if (!i || !slots_[*i].entry.is_static || slots_[*i].entry.port != port) return false;
  erase_at(*i);
  return true;
}

Learn MacTable::learn(const MacAddress& mac, PortId port, std::uint64_t now_ms, std::uint16_t vlan) {
  if (mac.is_multicast() || mac.is_zero()) {
    ++counters_.refused_multicast;
    return Learn::kRefusedMulticast;
  }
  if (auto i = find(mac, vlan)) {
    Slot& s = slots_[*i];
    if (s.entry.is_static) {
      if (s.entry.port == port) return Learn::kRefreshed;
      ++counters_.refused_static;
      return Learn::kRefusedStatic;
    }
    if (expired(s, now_ms)) {  // an aged entry is a new one, wherever it is now
      ++counters_.aged;
      --per_port_[s.entry.port];  // gone from its old port, whatever happens next
      if (!port_has_room(port)) {
        ++per_port_[s.entry.port];  // erase_at() takes it off again
        erase_at(*i);
        ++counters_.refused_port_limit;
        return Learn::kRefusedPortLimit;
      }
      ++per_port_[port];
      ++changes_;  // entries() hid the aged entry: it comes back, maybe behind another port
      s.entry = MacEntry{mac, port, vlan, false, now_ms};
      s.last_move_ms = 0;
      ++counters_.learned;
      return Learn::kLearned;
    }
    if (s.entry.port == port) {
      s.entry.last_seen_ms = now_ms;
      return Learn::kRefreshed;
    }
    if (s.last_move_ms != 0 && now_ms - s.last_move_ms < move_damping_ms_) {
      ++counters_.move_damped;
      return Learn::kMoveDamped;
    }
    if (!port_has_room(port)) {  // moving it would give the port more than its share
      ++counters_.refused_port_limit;
      return Learn::kRefusedPortLimit;
    }
    --per_port_[s.entry.port];
    ++per_port_[port];
    s.entry.port = port;
    s.entry.last_seen_ms = now_ms;
    s.last_move_ms = now_ms == 0 ? 1 : now_ms;
    ++counters_.moved;
    ++changes_;
    return Learn::kMoved;
  }
  // A port at its share, or a full table: reclaim aged entries first (at most once a second).
  if (!port_has_room(port) || size_ >= capacity_) reclaim(now_ms);
  if (!port_has_room(port)) {
    ++counters_.refused_port_limit;
    return Learn::kRefusedPortLimit;
  }
  if (size_ >= capacity_) {
    ++counters_.refused_full;
    return Learn::kRefusedFull;
  }
  insert(MacEntry{mac, port, vlan, false, now_ms});
  ++counters_.learned;
  return Learn::kLearned;
}

void MacTable::reclaim(std::uint64_t now_ms) {
  if (last_full_sweep_ms_ != 0 && now_ms - last_full_sweep_ms_ < 1000) return;
  last_full_sweep_ms_ = now_ms == 0 ? 1 : now_ms;
  sweep(now_ms);
}

std::optional<PortId> MacTable::lookup(const MacAddress& mac, std::uint64_t now_ms, std::uint16_t vlan) {
  auto i = find(mac, vlan);
  if (!i) return std::nullopt;
  if (expired(slots_[*i], now_ms)) {
    ++counters_.aged;
    erase_at(*i);
    return std::nullopt;
  }
  return slots_[*i].entry.port;
}

std::size_t MacTable::sweep(std::uint64_t now_ms) {
  std::size_t removed = 0;
  for (std::size_t i = 0; i < slots_.size();) {
    if (slots_[i].used && expired(slots_[i], now_ms)) {
      erase_at(i);  // may shift a later entry into i: look at i again
      ++removed;
      continue;
    }
    ++i;
  }
  counters_.aged += removed;
  return removed;
}

std::size_t MacTable::forget_port(PortId port) {
  std::size_t removed = 0;
  for (std::size_t i = 0; i < slots_.size();) {
    if (slots_[i].used && !slots_[i].entry.is_static && slots_[i].entry.port == port) {
      erase_at(i);  // may shift a later entry into i: look at i again
      ++removed;
      continue;
    }
    ++i;
  }
  return removed;
}

std::vector<MacEntry> MacTable::entries(std::uint64_t now_ms) const {
  std::vector<MacEntry> out;
  out.reserve(size_);
  for (const auto& s : slots_)
    if (s.used && !expired(s, now_ms)) out.push_back(s.entry);
  return out;
}

}  // namespace vswitch
