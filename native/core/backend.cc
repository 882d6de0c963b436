#include "backend.h"

#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "errors.h"

#ifdef MQSA_STATIC_TCMALLOC
#include <gperftools/malloc_extension_c.h>
#include <gperftools/nallocx.h>
#include <gperftools/tcmalloc.h>
#endif

namespace mqsa {
namespace {

// Serializes select() and guards what resolving writes (the staged and
// published function sets, and the info). The backend may only be switched
// while no block is counted live, so no block is ever freed by an allocator
// other than the one that made it.
std::mutex g_select_mutex;

size_t system_usable_size(void* ptr) { return malloc_usable_size(ptr); }

const char kSystemLibrary[] = "libtcmalloc_minimal.so.4";

}  // namespace

Backend::Backend() {
  const char* setting = std::getenv("MQTT_ALLOCATOR_BACKEND");
  resolve(setting != nullptr ? setting : "auto");
  check_prediction();
  publish();
}

int Backend::select(const std::string& requested) {
  if (requested != "auto" && requested != "system" && requested != "tcmalloc") {
    return MQ_ERR_INVALID_ARGS;
  }
  std::lock_guard<std::mutex> lock(g_select_mutex);

  // Dekker's pattern with allocate(): this thread announces the switch and
  // then reads the counts; an allocating thread counts its block and then
  // reads the announcement. All four accesses are sequentially consistent,
  // so at least one of the two threads reads the other's write. The reads
  // of the counts also acquire the frees that release() finished.
  switching_.store(true, std::memory_order_seq_cst);
  bool idle = counter_total(kCounterLiveBlocks, std::memory_order_seq_cst) == 0;
  if (idle) {
    resolve(requested);
    check_prediction();
    publish();
  }
  switching_.store(false, std::memory_order_release);
  return idle ? MQ_SUCCESS : MQ_ERR_ALLOCATOR;
}

void Backend::wait_for_select() const {
  // select() announces a switch only while it holds the mutex.
  std::lock_guard<std::mutex> lock(g_select_mutex);
}

BackendInfo Backend::info() const {
  std::lock_guard<std::mutex> lock(g_select_mutex);
  return info_;
}

bool Backend::Functions::operator==(const Functions& other) const {
  return malloc_fn == other.malloc_fn && free_fn == other.free_fn && usable_size_fn == other.usable_size_fn &&
         nallocx_fn == other.nallocx_fn && property_fn == other.property_fn &&
         release_free_memory_fn == other.release_free_memory_fn && prediction_exact == other.prediction_exact;
}

void Backend::publish() {
  for (const std::unique_ptr<Functions>& known : published_) {
    if (*known == staged_) {
      current_.store(known.get(), std::memory_order_release);
      return;
    }
  }
  published_.push_back(std::make_unique<Functions>(staged_));
  current_.store(published_.back().get(), std::memory_order_release);
}

void Backend::check_prediction() {
  staged_.prediction_exact = false;
  if (staged_.nallocx_fn == nullptr) return;

  // Not counted as a live block: the staged functions serve no other block yet.
  void* probe = staged_.malloc_fn(1);
  if (probe == nullptr) return;
  staged_.prediction_exact = staged_.usable_size_fn(probe) == staged_.nallocx_fn(1, 0);
  staged_.free_fn(probe);
}

void Backend::use_system(const std::string& source, const std::string& reason) {
  staged_ = Functions();
  staged_.malloc_fn = std::malloc;
  staged_.free_fn = std::free;
  staged_.usable_size_fn = system_usable_size;
  info_ = BackendInfo();
  info_.kind = BackendKind::kSystem;
  info_.name = "system";
  info_.source = source;
  info_.fallback_reason = reason;
}

// Stages a tcmalloc's entry points and records where they came from. The
// library is the file that contains `functions.malloc_fn`: a shared library,
// or the addon itself for the copy linked into it.
void Backend::use_tcmalloc(const Functions& functions, VersionFn version_fn, const std::string& source) {
  staged_ = functions;
  info_ = BackendInfo();
  info_.kind = BackendKind::kTcmalloc;
  info_.name = "tcmalloc";
  info_.source = source;
  if (version_fn != nullptr) {
    int major = 0;
    int minor = 0;
    const char* patch = nullptr;
    info_.version = version_fn(&major, &minor, &patch);
  }
  Dl_info where;
  if (dladdr(reinterpret_cast<void*>(functions.malloc_fn), &where) != 0 &&
      where.dli_fname != nullptr) {
    info_.library = where.dli_fname;
  }
}

// Takes every tcmalloc entry point from `handle` (RTLD_DEFAULT or a dlopen
// handle). Returns false, changing nothing, when one is missing.
bool Backend::use_tcmalloc_symbols(void* handle, const std::string& source) {
  Functions functions;
  functions.malloc_fn = reinterpret_cast<MallocFn>(dlsym(handle, "tc_malloc"));
  functions.free_fn = reinterpret_cast<FreeFn>(dlsym(handle, "tc_free"));
  functions.usable_size_fn = reinterpret_cast<UsableSizeFn>(dlsym(handle, "tc_malloc_size"));
  functions.nallocx_fn = reinterpret_cast<NallocxFn>(dlsym(handle, "tc_nallocx"));
  functions.property_fn = reinterpret_cast<PropertyFn>(
      dlsym(handle, "MallocExtension_GetNumericProperty"));
  functions.release_free_memory_fn = reinterpret_cast<ReleaseFreeMemoryFn>(
      dlsym(handle, "MallocExtension_ReleaseFreeMemory"));
  if (functions.malloc_fn == nullptr || functions.free_fn == nullptr ||
      functions.usable_size_fn == nullptr) {
    return false;
  }

  use_tcmalloc(functions, reinterpret_cast<VersionFn>(dlsym(handle, "tc_version")), source);
  return true;
}

#ifdef MQSA_STATIC_TCMALLOC
// Takes the copy of tcmalloc linked into this addon.
void Backend::use_bundled_tcmalloc() {
  Functions functions;
  functions.malloc_fn = tc_malloc;
  functions.free_fn = tc_free;
  functions.usable_size_fn = tc_malloc_size;
  functions.nallocx_fn = tc_nallocx;
  functions.property_fn = MallocExtension_GetNumericProperty;
  functions.release_free_memory_fn = MallocExtension_ReleaseFreeMemory;
  use_tcmalloc(functions, tc_version, "bundled");
}
#endif

void Backend::resolve(const std::string& requested) {
  if (requested == "system") {
    use_system("MQTT_ALLOCATOR_BACKEND=system", "");
    return;
  }

  std::string ignored;
  if (requested != "auto" && requested != "tcmalloc") {
    ignored = "invalid MQTT_ALLOCATOR_BACKEND value '" + requested +
              "' was ignored (expected system or tcmalloc); ";
  }

  // tcmalloc already in the process, as the process allocator (LD_PRELOAD)
  // or linked into Node. RTLD_DEFAULT does not see libraries loaded with
  // RTLD_LOCAL, so neither this addon's own copy nor one it opened counts.
  if (use_tcmalloc_symbols(RTLD_DEFAULT, "preloaded")) return;

  std::string errors;
#ifdef MQSA_STATIC_TCMALLOC
  // A copy linked into this addon, with its symbols hidden. It is built with
  // general-dynamic TLS, so loading the addon never needs static TLS room.
  // What is left to fail is its first allocation (no memory for its page
  // heap); then the libraries below are tried, then the system allocator.
  void* probe = tc_malloc(1);
  if (probe == nullptr) {
    errors = "bundled tcmalloc: tc_malloc(1) returned null; ";
  } else {
    tc_free(probe);
    use_bundled_tcmalloc();
    return;
  }
#endif

  // A copy shipped beside the addon file, then the system's. RTLD_LOCAL keeps
  // its malloc/free aliases out of the global scope, so Node's allocator is
  // untouched; RTLD_NODELETE keeps it mapped while blocks are alive. A failed
  // load (missing library, or "cannot allocate memory in static TLS block")
  // falls through to the system allocator.
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&system_usable_size), &self) != 0 &&
      self.dli_fname != nullptr) {
    std::string dir = self.dli_fname;
    size_t slash = dir.rfind('/');
    if (slash != std::string::npos) {
      std::string path = dir.substr(0, slash + 1) + kSystemLibrary;
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
      if (handle != nullptr && use_tcmalloc_symbols(handle, "shipped")) return;
    }
  }

  void* handle = dlopen(kSystemLibrary, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle != nullptr && use_tcmalloc_symbols(handle, "system-library")) {
    return;
  }
  const char* error = handle == nullptr ? dlerror() : "tc_malloc not found";
  errors += std::string(kSystemLibrary) + ": " + (error != nullptr ? error : "");

  use_system("fallback", ignored + "tcmalloc could not be loaded (" + errors + ")");
}

BackendHeapStats Backend::heap_stats() const {
  BackendHeapStats stats;
  PropertyFn property = functions().property_fn;
  if (property == nullptr) return stats;

  stats.has_stats = true;
  property("generic.current_allocated_bytes", &stats.current_allocated_bytes);
  property("generic.heap_size", &stats.heap_size);
  property("generic.total_physical_bytes", &stats.total_physical_bytes);
  property("tcmalloc.pageheap_free_bytes", &stats.pageheap_free_bytes);
  property("tcmalloc.pageheap_unmapped_bytes", &stats.pageheap_unmapped_bytes);
  property("tcmalloc.central_cache_free_bytes", &stats.central_cache_free_bytes);
  property("tcmalloc.thread_cache_free_bytes", &stats.thread_cache_free_bytes);
  return stats;
}

void Backend::release_free_memory() const {
  ReleaseFreeMemoryFn release = functions().release_free_memory_fn;
  if (release != nullptr) release();
}

}  // namespace mqsa
