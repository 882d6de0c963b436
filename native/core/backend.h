// The memory backend: gperftools tcmalloc through its explicit API
// (tc_malloc, tc_free, tc_malloc_size, MallocExtension_*), or the system
// allocator. tcmalloc is never installed as the process malloc; only blocks
// allocated through this package come from it.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "thread_counters.h"

namespace mqsa {

enum class BackendKind { kSystem, kTcmalloc };

struct BackendInfo {
  BackendKind kind = BackendKind::kSystem;
  std::string name;     // "tcmalloc" or "system"
  std::string source;   // where the backend came from, see backend.cc
  std::string version;  // tcmalloc's version string; empty for the system
  std::string library;  // path of the loaded tcmalloc library, when loaded
  // Reason tcmalloc is not in use although it was not disabled on purpose.
  // Empty when tcmalloc is in use or MQTT_ALLOCATOR_BACKEND=system.
  std::string fallback_reason;
};

// Heap figures reported by the backend. `has_stats` is false when the
// backend provides none (the system allocator).
struct BackendHeapStats {
  bool has_stats = false;
  size_t current_allocated_bytes = 0;
  size_t heap_size = 0;
  size_t total_physical_bytes = 0;
  size_t pageheap_free_bytes = 0;
  size_t pageheap_unmapped_bytes = 0;
  size_t central_cache_free_bytes = 0;
  size_t thread_cache_free_bytes = 0;
};

class Backend {
 public:
  // The process-wide backend, resolved on first use. The resolution order is
  // MQTT_ALLOCATOR_BACKEND=system|tcmalloc, then tcmalloc already in the
  // process (LD_PRELOAD), then tcmalloc linked into the addon, then the
  // system's libtcmalloc_minimal.so.4, then the system allocator.
  // Inline, because every allocation and free calls it. Constructed once and
  // never destroyed, because finalizers that run while the process exits
  // may still free blocks.
  static Backend& instance() {
    static Backend* backend = new Backend();
    return *backend;
  }

  // Resolves the backend again with `requested` ("system", "tcmalloc" or
  // "auto") as if it were the environment setting. Allowed only while no
  // block is allocated; returns MQ_ERR_ALLOCATOR otherwise and
  // MQ_ERR_INVALID_ARGS for an unknown name. Safe while other threads
  // allocate: an allocation that starts meanwhile either makes select()
  // refuse or waits for it and then uses the new backend.
  int select(const std::string& requested);

  // Returns a block of at least `size` bytes, or nullptr when the backend is
  // out of memory.
  void* allocate(size_t size) { return allocate(size, this_thread_counters()); }

  // The same, counting the block in `counters`, the calling thread's.
  void* allocate(size_t size, ThreadCounters& counters) {
    // With select(), sequentially consistent: either select() reads this
    // block counted and refuses to switch, or this thread reads that it
    // switches.
    counters.add(kCounterLiveBlocks, 1, std::memory_order_seq_cst);
    if (switching_.load(std::memory_order_seq_cst)) wait_for_select();
    void* ptr = functions().malloc_fn(size == 0 ? 1 : size);
    if (ptr == nullptr) counters.add(kCounterLiveBlocks, -1);
    return ptr;
  }

  void release(void* ptr) { release(ptr, this_thread_counters()); }

  // No switch can happen while the block is counted, so the functions
  // loaded here are the ones that allocated it. The count drops only after
  // the free, with release order, so a select() that reads the lower count
  // also finds the free finished.
  void release(void* ptr, ThreadCounters& counters) {
    functions().free_fn(ptr);
    counters.add(kCounterLiveBlocks, -1, std::memory_order_release);
  }

  // Returns the bytes the backend really reserved for `ptr`.
  size_t usable_size(void* ptr) const { return functions().usable_size_fn(ptr); }

  // Returns the usable size that allocate(size) would reserve, or 0 when the
  // backend cannot tell before allocating (the system allocator).
  size_t predicted_size(size_t size) const {
    NallocxFn nallocx = functions().nallocx_fn;
    if (nallocx == nullptr) return 0;
    return nallocx(size == 0 ? 1 : size, 0);
  }

  // Returns the usable size that allocate(size) reserves: the prediction
  // where it is exact, else the usable size of a probe block allocated and
  // freed at once. Returns 0 when even the probe cannot be allocated.
  size_t usable_size_for(size_t size, ThreadCounters& counters) {
    size_t predicted = predicted_size(size);
    if (predicted != 0 && prediction_exact()) return predicted;
    void* probe = allocate(size, counters);
    if (probe == nullptr) return 0;
    size_t usable = usable_size(probe);
    release(probe, counters);
    return usable;
  }

  // True when predicted_size() is always the usable size that allocate()
  // then reserves, so that callers need not ask for it. tcmalloc's nallocx
  // is exact, unless a tool such as valgrind replaced tcmalloc's malloc and
  // left nallocx; select() checks which with one probe block.
  bool prediction_exact() const { return functions().prediction_exact; }

  // A copy, since select() may replace it meanwhile.
  BackendInfo info() const;
  BackendHeapStats heap_stats() const;

  // Returns free backend memory to the operating system where the backend
  // supports it (tcmalloc's ReleaseFreeMemory).
  void release_free_memory() const;

 private:
  using MallocFn = void* (*)(size_t);
  using FreeFn = void (*)(void*);
  using UsableSizeFn = size_t (*)(void*);
  using NallocxFn = size_t (*)(size_t, int);
  using PropertyFn = int (*)(const char*, size_t*);
  using ReleaseFreeMemoryFn = void (*)();
  using VersionFn = const char* (*)(int*, int*, const char**);

  // One backend's entry points. A published set is never changed or freed,
  // so a thread that loaded it may go on using it while select() publishes
  // another.
  struct Functions {
    MallocFn malloc_fn = nullptr;
    FreeFn free_fn = nullptr;
    UsableSizeFn usable_size_fn = nullptr;
    NallocxFn nallocx_fn = nullptr;
    PropertyFn property_fn = nullptr;
    ReleaseFreeMemoryFn release_free_memory_fn = nullptr;
    bool prediction_exact = false;

    bool operator==(const Functions& other) const;
  };

  Backend();
  const Functions& functions() const { return *current_.load(std::memory_order_acquire); }
  // Blocks until a running select() has finished.
  void wait_for_select() const;
  void resolve(const std::string& requested);
  void check_prediction();
  // Makes `staged_` the set in use.
  void publish();
  void use_system(const std::string& source, const std::string& reason);
  void use_tcmalloc(const Functions& functions, VersionFn version_fn, const std::string& source);
  bool use_tcmalloc_symbols(void* handle, const std::string& source);
  // Defined only in builds that link tcmalloc (MQSA_STATIC_TCMALLOC).
  void use_bundled_tcmalloc();

  std::atomic<const Functions*> current_{nullptr};
  std::atomic<bool> switching_{false};
  // Written while resolving, which runs in the constructor or under the
  // select mutex, as are `published_` and `info_`.
  Functions staged_;
  // Every set published so far, each kept once. Resolving the same backend
  // again reuses its set, so the list stays as short as the backends tried.
  std::vector<std::unique_ptr<Functions>> published_;
  BackendInfo info_;
};

}  // namespace mqsa
