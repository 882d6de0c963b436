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

// Blocks handed out and not yet released, over all backends. The backend may
// only be switched while this is zero, so no block is ever freed by an
// allocator other than the one that made it.
std::mutex g_select_mutex;

size_t system_usable_size(void* ptr) { return malloc_usable_size(ptr); }

const char kSystemLibrary[] = "libtcmalloc_minimal.so.4";

}  // namespace

Backend::Backend() {
  const char* setting = std::getenv("MQTT_ALLOCATOR_BACKEND");
  resolve(setting != nullptr ? setting : "auto");
  check_prediction();
}

int Backend::select(const std::string& requested) {
  if (requested != "auto" && requested != "system" && requested != "tcmalloc") {
    return MQ_ERR_INVALID_ARGS;
  }
  std::lock_guard<std::mutex> lock(g_select_mutex);
  if (counter_total(kCounterLiveBlocks) != 0) return MQ_ERR_ALLOCATOR;
  resolve(requested);
  check_prediction();
  return MQ_SUCCESS;
}

void Backend::check_prediction() {
  prediction_exact_ = false;
  if (nallocx_fn_ == nullptr) return;

  // Not counted as a live block: no allocation can run concurrently here.
  void* probe = malloc_fn_(1);
  if (probe == nullptr) return;
  prediction_exact_ = usable_size_fn_(probe) == nallocx_fn_(1, 0);
  free_fn_(probe);
}

void Backend::use_system(const std::string& source, const std::string& reason) {
  malloc_fn_ = std::malloc;
  free_fn_ = std::free;
  usable_size_fn_ = system_usable_size;
  nallocx_fn_ = nullptr;
  property_fn_ = nullptr;
  release_free_memory_fn_ = nullptr;
  info_ = BackendInfo();
  info_.kind = BackendKind::kSystem;
  info_.name = "system";
  info_.source = source;
  info_.fallback_reason = reason;
}

// Takes every tcmalloc entry point from `handle` (RTLD_DEFAULT or a dlopen
// handle). Returns false, changing nothing, when one is missing.
bool Backend::use_tcmalloc_symbols(void* handle, const std::string& source) {
  auto malloc_fn = reinterpret_cast<MallocFn>(dlsym(handle, "tc_malloc"));
  auto free_fn = reinterpret_cast<FreeFn>(dlsym(handle, "tc_free"));
  auto usable_fn = reinterpret_cast<UsableSizeFn>(dlsym(handle, "tc_malloc_size"));
  auto nallocx_fn = reinterpret_cast<NallocxFn>(dlsym(handle, "tc_nallocx"));
  auto property_fn = reinterpret_cast<PropertyFn>(
      dlsym(handle, "MallocExtension_GetNumericProperty"));
  auto release_fn = reinterpret_cast<ReleaseFreeMemoryFn>(
      dlsym(handle, "MallocExtension_ReleaseFreeMemory"));
  using VersionFn = const char* (*)(int*, int*, const char**);
  auto version_fn = reinterpret_cast<VersionFn>(dlsym(handle, "tc_version"));
  if (malloc_fn == nullptr || free_fn == nullptr || usable_fn == nullptr) {
    return false;
  }

  malloc_fn_ = malloc_fn;
  free_fn_ = free_fn;
  usable_size_fn_ = usable_fn;
  nallocx_fn_ = nallocx_fn;
  property_fn_ = property_fn;
  release_free_memory_fn_ = release_fn;
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
  if (dladdr(reinterpret_cast<void*>(malloc_fn), &where) != 0 &&
      where.dli_fname != nullptr) {
    info_.library = where.dli_fname;
  }
  return true;
}

#ifdef MQSA_STATIC_TCMALLOC
// Takes the copy of tcmalloc linked into this addon.
void Backend::use_bundled_tcmalloc() {
  malloc_fn_ = tc_malloc;
  free_fn_ = tc_free;
  usable_size_fn_ = tc_malloc_size;
  nallocx_fn_ = tc_nallocx;
  property_fn_ = MallocExtension_GetNumericProperty;
  release_free_memory_fn_ = MallocExtension_ReleaseFreeMemory;
  info_ = BackendInfo();
  info_.kind = BackendKind::kTcmalloc;
  info_.name = "tcmalloc";
  info_.source = "bundled";
  {
    int major = 0;
    int minor = 0;
    const char* patch = nullptr;
    info_.version = tc_version(&major, &minor, &patch);
  }
  // The library is the file that contains this copy: the addon itself.
  Dl_info where;
  if (dladdr(reinterpret_cast<void*>(&tc_malloc), &where) != 0 &&
      where.dli_fname != nullptr) {
    info_.library = where.dli_fname;
  }
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
  if (property_fn_ == nullptr) return stats;

  stats.has_stats = true;
  property_fn_("generic.current_allocated_bytes", &stats.current_allocated_bytes);
  property_fn_("generic.heap_size", &stats.heap_size);
  property_fn_("generic.total_physical_bytes", &stats.total_physical_bytes);
  property_fn_("tcmalloc.pageheap_free_bytes", &stats.pageheap_free_bytes);
  property_fn_("tcmalloc.pageheap_unmapped_bytes", &stats.pageheap_unmapped_bytes);
  property_fn_("tcmalloc.central_cache_free_bytes", &stats.central_cache_free_bytes);
  property_fn_("tcmalloc.thread_cache_free_bytes", &stats.thread_cache_free_bytes);
  return stats;
}

void Backend::release_free_memory() const {
  if (release_free_memory_fn_ != nullptr) release_free_memory_fn_();
}

}  // namespace mqsa
