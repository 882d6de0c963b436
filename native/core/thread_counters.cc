#include "thread_counters.h"

#include <algorithm>
#include <mutex>
#include <vector>

namespace mqsa {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<const ThreadCounters*> live;  // counters of running threads
  int64_t retired[kCounterSlots] = {};      // totals left by ended threads
  uint64_t next_thread_id = 1;
};

// Never destroyed: threads may end, and fold their counters in, while the
// process runs its static destructors.
Registry& registry() {
  static Registry* instance = new Registry();
  return *instance;
}

uint64_t register_counters(const ThreadCounters* counters) {
  Registry& shared = registry();
  std::lock_guard<std::mutex> lock(shared.mutex);
  shared.live.push_back(counters);
  return shared.next_thread_id++;
}

}  // namespace

ThreadCounters::ThreadCounters() : thread_id_(register_counters(this)) {}

ThreadCounters::~ThreadCounters() {
  Registry& shared = registry();
  std::lock_guard<std::mutex> lock(shared.mutex);
  for (int slot = 0; slot < kCounterSlots; ++slot) shared.retired[slot] += value(slot);
  shared.live.erase(std::find(shared.live.begin(), shared.live.end(), this));
}

ThreadCounters& this_thread_counters() {
  thread_local ThreadCounters counters;
  return counters;
}

int64_t counter_total(int slot, std::memory_order order) {
  Registry& shared = registry();
  std::lock_guard<std::mutex> lock(shared.mutex);
  int64_t total = shared.retired[slot];
  for (const ThreadCounters* counters : shared.live) total += counters->value(slot, order);
  return total;
}

}  // namespace mqsa
