// The one full fence of the project. Every call site names the lost wakeup it prevents.
//
// Sleeping needs a store ("wake me" flag) followed by a load of a different location
// (the other side's index): the store-buffering (Dekker) pattern. Acquire/release cannot
// order a store before a later load; only a sequentially consistent fence can
// (C++ [atomics.fences]: only seq_cst fences take part in the single total order S; on
// x86 an acq_rel fence compiles to nothing, and the store-buffering outcome then shows).
#pragma once

#include <atomic>

namespace vswitch::sys {

inline void full_fence() noexcept { std::atomic_thread_fence(std::memory_order_seq_cst); }

}  // namespace vswitch::sys
