// Module initialization and per-environment lifecycle. The addon is
// context-aware: each Node environment (the main thread and every
// worker_thread) gets its own ThreadState.
#include <napi.h>

#include "allocator_object.h"
#include "buffers.h"
#include "errors.h"
#include "registry_functions.h"
#include "session_queue.h"
#include "session_registry.h"
#include "tags.h"
#include "thread_state.h"

namespace mqsa {

std::shared_ptr<ThreadState>& thread_state(Napi::Env env) {
  return *env.GetInstanceData<std::shared_ptr<ThreadState>>();
}

// Environment cleanup hook. Runs on the environment's own thread when it is
// torn down (worker exit or terminate(), or the natural end of the main
// thread, but not process.exit()), before the remaining finalizers. Frees every
// block still live, so a thread's memory returns even if some finalizers
// never run, and removes the thread's allocators and sessions. Finalizers
// that run afterwards find their records released and only drop them.
static void teardown_thread(void* arg) {
  auto* state = static_cast<std::shared_ptr<ThreadState>*>(arg);
  ThreadState& thread = **state;
  release_all_buffers(thread);
  for (NativeQueue* queue : thread.queues) queue->clear();
  thread.payloads.free_all(*thread.counters);
  if (thread.initialized) SessionRegistry::instance().unregister_thread(thread.thread_key);
  thread.initialized = false;
  thread.torn_down = true;
  delete_spare_records(thread);
  thread.allocator_constructor.Reset();
  thread.create_error.Reset();
  thread.on_limit_exceeded.Reset();
}

// Instance-data finalizer: drops the environment's share of the state.
// Buffer records keep their own share, so a finalizer that runs later
// still finds the state alive.
static void finalize_instance_data(Napi::Env, std::shared_ptr<ThreadState>* state) {
  delete state;
}

static Napi::Array error_code_list(Napi::Env env) {
  Napi::Array list = Napi::Array::New(env);
  uint32_t index = 0;
#define MQ_ERROR_ENTRY(name, value, message)   \
  {                                            \
    Napi::Object entry = Napi::Object::New(env); \
    entry.Set("name", #name);                  \
    entry.Set("value", value);                 \
    entry.Set("message", message);             \
    list.Set(index++, entry);                  \
  }
  MQ_ERROR_LIST(MQ_ERROR_ENTRY)
#undef MQ_ERROR_ENTRY
  return list;
}

static Napi::Array memory_tag_list(Napi::Env env) {
  Napi::Array list = Napi::Array::New(env);
  for (int32_t tag = 0; tag < MEM_TAG_COUNT; tag++) {
    list.Set(static_cast<uint32_t>(tag), tag_name(tag));
  }
  return list;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* state = new std::shared_ptr<ThreadState>(std::make_shared<ThreadState>());
  (*state)->counters = &this_thread_counters();
  env.SetInstanceData<std::shared_ptr<ThreadState>, finalize_instance_data>(state);
  napi_add_env_cleanup_hook(env, teardown_thread, state);

  exports.Set("NativeAllocator", AllocatorObject::define(env));
  exports.Set("errorCodes", error_code_list(env));
  exports.Set("memoryTags", memory_tag_list(env));
  export_registry_functions(env, exports);
  export_queue_functions(env, exports);
  export_payload_functions(env, exports);
  return exports;
}

}  // namespace mqsa

static Napi::Object init_module(Napi::Env env, Napi::Object exports) {
  return mqsa::init(env, exports);
}

NODE_API_MODULE(mqtt_session_allocator, init_module)
