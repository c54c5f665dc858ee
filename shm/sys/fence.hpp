// The one full fence of the project. Every call site names the lost wakeup it prevents.
//
// Sleeping needs a store ("wake me" flag) followed by a load of a different location
// (the other side's index): the store-buffering (Dekker) pattern. Acquire/release cannot
// order a store before a later load; only a sequentially consistent fence can
// (shared/research/reliability-anchors.md d2, d3: on x86 an acq_rel fence compiles to
// nothing and the lost-wakeup outcome was measured in 24% of runs).
#pragma once

#include <atomic>

namespace vswitch::sys {

inline void full_fence() noexcept { std::atomic_thread_fence(std::memory_order_seq_cst); }

}  // namespace vswitch::sys
