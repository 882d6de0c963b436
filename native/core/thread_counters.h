// Process-wide counters that every thread updates on each allocation: the
// usage per memory tag and the backend's live blocks. A single shared atomic
// would cost a locked instruction per update and make all threads contend
// for one cache line. Instead each thread adds to counters of its own, with
// plain loads and stores, and a read sums the counters of all threads plus
// what threads that have ended left behind.
#pragma once

#include <atomic>
#include <cstdint>

#include "tags.h"

namespace mqsa {

// Counter slots: one per memory tag, then the backend's live blocks.
constexpr int kCounterLiveBlocks = MEM_TAG_COUNT;
constexpr int kCounterSlots = MEM_TAG_COUNT + 1;

// The calling thread's counters, and a number that identifies the thread.
// Registered on the thread's first use and folded into the totals of ended
// threads when it ends.
class ThreadCounters {
 public:
  ThreadCounters();
  ~ThreadCounters();
  ThreadCounters(const ThreadCounters&) = delete;
  ThreadCounters& operator=(const ThreadCounters&) = delete;

  // Never 0, and never reused within the process.
  uint64_t thread_id() const { return thread_id_; }

  // Adds `delta` (possibly negative) to counter `slot`. Only the owning
  // thread writes, so a plain load and store is exact. `order` orders the
  // store for a reader that must see what came before it.
  void add(int slot, int64_t delta, std::memory_order order = std::memory_order_relaxed) {
    std::atomic<int64_t>& value = values_[slot];
    value.store(value.load(std::memory_order_relaxed) + delta, order);
  }

  int64_t value(int slot, std::memory_order order = std::memory_order_relaxed) const {
    return values_[slot].load(order);
  }

 private:
  const uint64_t thread_id_;
  std::atomic<int64_t> values_[kCounterSlots] = {};
};

// Returns the calling thread's counters. Hot paths call it once and keep
// the reference, since each call looks up thread-local storage.
ThreadCounters& this_thread_counters();

// Returns the process-wide total of counter `slot`. A block allocated on one
// thread and freed on another moves between two threads' counters, so a
// read that overlaps such a free can be off by that block for a moment.
// The total is exact whenever no free is in flight.
// `order` orders the reads of the threads' counters.
int64_t counter_total(int slot, std::memory_order order = std::memory_order_relaxed);

}  // namespace mqsa
