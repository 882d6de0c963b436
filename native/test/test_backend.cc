// Backend resolution and switching. The tests run under any
// MQTT_ALLOCATOR_BACKEND setting, and checks that depend on the setting or on
// an installed tcmalloc library print why they were skipped.
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "check.h"
#include "errors.h"

namespace {

using mqsa::Backend;
using mqsa::BackendKind;

bool system_requested() {
  const char* setting = std::getenv("MQTT_ALLOCATOR_BACKEND");
  return setting != nullptr && std::string(setting) == "system";
}

// The backend name that matches the environment, for restoring it.
const char* requested_backend() { return system_requested() ? "system" : "auto"; }

// Returns whether tests may load tcmalloc, printing why not. With
// MQTT_ALLOCATOR_BACKEND=system the process must stay free of tcmalloc.
bool tcmalloc_available() {
  if (system_requested()) {
    std::printf("  skipped: MQTT_ALLOCATOR_BACKEND=system is set\n");
    return false;
  }
  // Same flags as the backend, so this probe never unloads the copy it uses.
  void* handle = dlopen("libtcmalloc_minimal.so.4", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    std::printf("  skipped: libtcmalloc_minimal.so.4 is not installed\n");
    return false;
  }
  dlclose(handle);
  return true;
}

// Returns whether tcmalloc's malloc was replaced, as valgrind does: the block
// then comes from the replacement, so its usable size differs from
// tcmalloc's own prediction and tcmalloc's statistics never see it.
bool tcmalloc_malloc_replaced(Backend& backend) {
  void* ptr = backend.allocate(1);
  bool replaced = backend.usable_size(ptr) != backend.predicted_size(1);
  backend.release(ptr);
  if (replaced) std::printf("  skipped: tcmalloc's malloc is replaced (as under valgrind)\n");
  return replaced;
}

}  // namespace

// This test and the next run before any select() call, because they check
// what Backend::instance() resolved from the environment.
TEST(backend_default_is_tcmalloc) {
  const char* setting = std::getenv("MQTT_ALLOCATOR_BACKEND");
  const Backend& backend = Backend::instance();
  if (setting != nullptr) {
    std::printf("  skipped: MQTT_ALLOCATOR_BACKEND=%s is set\n", setting);
    return;
  }
  if (!tcmalloc_available()) return;

  CHECK(backend.info().name == "tcmalloc");
  CHECK(backend.info().kind == BackendKind::kTcmalloc);
  CHECK(backend.info().fallback_reason.empty());
  CHECK(!backend.info().library.empty());
}

TEST(backend_environment_system) {
  if (!system_requested()) {
    std::printf("  skipped: MQTT_ALLOCATOR_BACKEND=system is not set\n");
    return;
  }

  const Backend& backend = Backend::instance();
  CHECK(backend.info().name == "system");
  CHECK(backend.info().source == "MQTT_ALLOCATOR_BACKEND=system");
  CHECK(backend.info().fallback_reason.empty());
}

TEST(backend_select_auto_finds_tcmalloc) {
  if (!tcmalloc_available()) return;

  Backend& backend = Backend::instance();
  CHECK_EQ(backend.select("auto"), MQ_SUCCESS);
  CHECK(backend.info().name == "tcmalloc");
  CHECK_EQ(backend.select("tcmalloc"), MQ_SUCCESS);
  CHECK(backend.info().name == "tcmalloc");
}

TEST(backend_select_system) {
  Backend& backend = Backend::instance();
  CHECK_EQ(backend.select("system"), MQ_SUCCESS);
  CHECK(backend.info().name == "system");
  CHECK(backend.info().kind == BackendKind::kSystem);
  CHECK(backend.info().fallback_reason.empty());
  CHECK(backend.info().version.empty());
}

TEST(backend_select_unknown_name) {
  Backend& backend = Backend::instance();
  std::string before = backend.info().name;
  CHECK_EQ(backend.select("bogus"), MQ_ERR_INVALID_ARGS);
  CHECK_EQ(backend.select(""), MQ_ERR_INVALID_ARGS);
  CHECK_EQ(backend.select("System"), MQ_ERR_INVALID_ARGS);
  CHECK(backend.info().name == before);
}

TEST(backend_select_refused_with_live_block) {
  Backend& backend = Backend::instance();
  CHECK_EQ(backend.select("system"), MQ_SUCCESS);
  void* ptr = backend.allocate(64);
  CHECK(ptr != nullptr);

  CHECK_EQ(backend.select("auto"), MQ_ERR_ALLOCATOR);
  CHECK_EQ(backend.select("system"), MQ_ERR_ALLOCATOR);
  CHECK(backend.info().name == "system");

  backend.release(ptr);
  CHECK_EQ(backend.select(requested_backend()), MQ_SUCCESS);
}

// Threads allocate and free blocks while another switches the backend back
// and forth. A block freed by the allocator that did not make it aborts the
// process (glibc) or corrupts tcmalloc's heap, and the usable size of a block
// asked of the wrong allocator is garbage. CHECK is not thread-safe, so the
// threads only count, and the main thread checks the counts.
TEST(backend_select_races_allocations) {
  if (!tcmalloc_available()) return;

  Backend& backend = Backend::instance();
  constexpr int kThreads = 2;
  std::atomic<bool> done{false};
  std::atomic<long> allocations{0};
  std::atomic<long> wrong_sizes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      long count = 0;
      while (!done.load(std::memory_order_relaxed)) {
        void* ptr = backend.allocate(48);
        if (ptr == nullptr) continue;
        // Both backends round 48 bytes up by less than a page.
        size_t usable = backend.usable_size(ptr);
        if (usable < 48 || usable > 4096) wrong_sizes.fetch_add(1);
        backend.release(ptr);
        count += 1;
        // Gives the switching thread moments with no block live, which it
        // would seldom get under valgrind, where threads take turns.
        if (count % 16 == 0) std::this_thread::yield();
      }
      allocations.fetch_add(count);
    });
  }

  // Runs for 300 ms, and on until the first switch, for 5 s at most.
  int switches = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    auto elapsed = std::chrono::steady_clock::now() - start;
    if (elapsed > std::chrono::seconds(5)) break;
    if (elapsed > std::chrono::milliseconds(300) && switches > 0) break;
    if (backend.select(i % 2 == 0 ? "system" : "tcmalloc") == MQ_SUCCESS) switches += 1;
  }
  done.store(true);
  for (std::thread& thread : threads) thread.join();

  CHECK_EQ(wrong_sizes.load(), 0);
  CHECK(switches > 0);
  CHECK(allocations.load() > 0);
  std::printf("  %d switches during %ld allocations\n", switches, allocations.load());
  CHECK_EQ(backend.select(requested_backend()), MQ_SUCCESS);
}

TEST(backend_tcmalloc_heap_stats) {
  if (!tcmalloc_available()) return;

  Backend& backend = Backend::instance();
  CHECK_EQ(backend.select("tcmalloc"), MQ_SUCCESS);
  CHECK(backend.heap_stats().has_stats);
  CHECK(!backend.info().version.empty());
  if (tcmalloc_malloc_replaced(backend)) return;

  void* ptr = backend.allocate(100000);
  CHECK(ptr != nullptr);
  mqsa::BackendHeapStats stats = backend.heap_stats();
  CHECK(stats.current_allocated_bytes >= 100000u);
  CHECK(stats.heap_size >= stats.current_allocated_bytes);

  backend.release(ptr);
  backend.release_free_memory();
}

TEST(backend_system_has_no_heap_stats) {
  Backend& backend = Backend::instance();
  CHECK_EQ(backend.select("system"), MQ_SUCCESS);
  CHECK(!backend.heap_stats().has_stats);
  CHECK_EQ(backend.predicted_size(100), 0u);
  backend.release_free_memory();
}

TEST(backend_usable_size_at_least_requested) {
  const char* names[] = {"system", requested_backend()};
  const size_t sizes[] = {0, 1, 7, 8, 100, 1000, 4096, 40000, 300000};
  Backend& backend = Backend::instance();
  for (const char* name : names) {
    CHECK_EQ(backend.select(name), MQ_SUCCESS);
    for (size_t size : sizes) {
      void* ptr = backend.allocate(size);
      CHECK(ptr != nullptr);
      if (ptr == nullptr) continue;

      size_t usable = backend.usable_size(ptr);
      if (usable < size || usable == 0) {
        std::printf("  %s: %zu bytes gave usable size %zu\n", name, size, usable);
      }
      CHECK(usable >= size);
      CHECK(usable > 0u);
      backend.release(ptr);
    }
  }
}

TEST(backend_predicted_size_matches_usable) {
  if (!tcmalloc_available()) return;

  Backend& backend = Backend::instance();
  CHECK_EQ(backend.select("tcmalloc"), MQ_SUCCESS);
  CHECK(backend.info().kind == BackendKind::kTcmalloc);
  if (tcmalloc_malloc_replaced(backend)) return;

  CHECK(backend.prediction_exact());
  // Every small size class, then large blocks around page and span sizes.
  std::vector<size_t> sizes;
  for (size_t size = 0; size <= 300 * 1024; size += size < 4096 ? 1 : 97) sizes.push_back(size);
  for (size_t size : {size_t{1} << 20, (size_t{1} << 20) + 1, size_t{3} << 20, (size_t{8} << 20) - 5}) {
    sizes.push_back(size);
  }
  for (size_t size : sizes) {
    void* ptr = backend.allocate(size);
    CHECK(ptr != nullptr);
    if (ptr == nullptr) continue;

    CHECK_EQ(backend.predicted_size(size), backend.usable_size(ptr));
    backend.release(ptr);
  }
}

TEST(backend_prediction_not_exact_for_system) {
  Backend& backend = Backend::instance();
  CHECK_EQ(backend.select("system"), MQ_SUCCESS);
  CHECK(!backend.prediction_exact());
}

TEST_MAIN()
