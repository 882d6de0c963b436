// The memory backend: gperftools tcmalloc through its explicit API
// (tc_malloc, tc_free, tc_malloc_size, MallocExtension_*), or the system
// allocator. tcmalloc is never installed as the process malloc; only blocks
// allocated through this package come from it.
#pragma once

#include <cstddef>
#include <string>

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
  // MQ_ERR_INVALID_ARGS for an unknown name.
  int select(const std::string& requested);

  // Returns a block of at least `size` bytes, or nullptr when the backend is
  // out of memory.
  void* allocate(size_t size) { return allocate(size, this_thread_counters()); }

  // The same, counting the block in `counters`, the calling thread's.
  void* allocate(size_t size, ThreadCounters& counters) {
    counters.add(kCounterLiveBlocks, 1);
    void* ptr = malloc_fn_(size == 0 ? 1 : size);
    if (ptr == nullptr) counters.add(kCounterLiveBlocks, -1);
    return ptr;
  }

  void release(void* ptr) { release(ptr, this_thread_counters()); }

  void release(void* ptr, ThreadCounters& counters) {
    free_fn_(ptr);
    counters.add(kCounterLiveBlocks, -1);
  }

  // Returns the bytes the backend really reserved for `ptr`.
  size_t usable_size(void* ptr) const { return usable_size_fn_(ptr); }

  // Returns the usable size that allocate(size) would reserve, or 0 when the
  // backend cannot tell before allocating (the system allocator).
  size_t predicted_size(size_t size) const {
    return nallocx_fn_ != nullptr ? nallocx_fn_(size == 0 ? 1 : size, 0) : 0;
  }

  // True when predicted_size() is always the usable size that allocate()
  // then reserves, so that callers need not ask for it. tcmalloc's nallocx
  // is exact, unless a tool such as valgrind replaced tcmalloc's malloc and
  // left nallocx; select() checks which with one probe block.
  bool prediction_exact() const { return prediction_exact_; }

  const BackendInfo& info() const { return info_; }
  BackendHeapStats heap_stats() const;

  // Returns free backend memory to the operating system where the backend
  // supports it (tcmalloc's ReleaseFreeMemory).
  void release_free_memory() const;

 private:
  Backend();
  void resolve(const std::string& requested);
  void check_prediction();
  void use_system(const std::string& source, const std::string& reason);
  bool use_tcmalloc_symbols(void* handle, const std::string& source);
  // Defined only in builds that link tcmalloc (MQSA_STATIC_TCMALLOC).
  void use_bundled_tcmalloc();

  using MallocFn = void* (*)(size_t);
  using FreeFn = void (*)(void*);
  using UsableSizeFn = size_t (*)(void*);
  using NallocxFn = size_t (*)(size_t, int);
  using PropertyFn = int (*)(const char*, size_t*);
  using ReleaseFreeMemoryFn = void (*)();

  MallocFn malloc_fn_ = nullptr;
  FreeFn free_fn_ = nullptr;
  UsableSizeFn usable_size_fn_ = nullptr;
  NallocxFn nallocx_fn_ = nullptr;
  PropertyFn property_fn_ = nullptr;
  ReleaseFreeMemoryFn release_free_memory_fn_ = nullptr;
  bool prediction_exact_ = false;
  BackendInfo info_;
};

}  // namespace mqsa
