#include "registry_functions.h"

#include <atomic>

#include "allocator_object.h"
#include "backend.h"
#include "buffers.h"
#include "errors.h"
#include "hot_call.h"
#include "js_errors.h"
#include "session_registry.h"
#include "thread_state.h"

namespace mqsa {
namespace {

SessionRegistry& registry() { return SessionRegistry::instance(); }

Napi::Number number(Napi::Env env, size_t value) {
  return Napi::Number::New(env, static_cast<double>(value));
}

// Throws unless initThread() ran in this environment.
bool require_thread(Napi::Env env) {
  if (thread_state(env)->initialized) return true;
  throw_code(env, MQ_ERR_ALLOCATOR_HIERARCHY, "the thread allocator is not initialized");
  return false;
}

Napi::Value allocators_array(Napi::Env env, const SessionAllocators& allocators, bool resumed) {
  Napi::Array result = Napi::Array::New(env, 4);
  result.Set(0u, AllocatorObject::wrap(env, allocators.session));
  result.Set(1u, AllocatorObject::wrap(env, allocators.queue));
  result.Set(2u, AllocatorObject::wrap(env, allocators.worker));
  result.Set(3u, Napi::Boolean::New(env, resumed));
  return result;
}

std::string quoted(const std::string& client_id) { return "'" + client_id + "'"; }

// initThread(name): registers this thread's allocator under the root.
Napi::Value init_thread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<ThreadState>& state = thread_state(env);
  if (state->initialized) return AllocatorObject::wrap(env, state->thread_allocator);

  std::string name;
  if (!read_string(env, info[0], "thread name", name)) return Napi::Value();
  int rc = registry().register_thread(name, state->thread_key, state->thread_allocator);
  if (rc != MQ_SUCCESS) return throw_code(env, rc, "could not register thread '" + name + "'");
  state->initialized = true;
  return AllocatorObject::wrap(env, state->thread_allocator);
}

// setHooks(createError, onLimitExceeded)
Napi::Value set_hooks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction() || !info[1].IsFunction()) {
    return throw_code(env, MQ_ERR_INVALID_ARGS, "setHooks expects two functions");
  }
  std::shared_ptr<ThreadState>& state = thread_state(env);
  state->create_error = Napi::Persistent(info[0].As<Napi::Function>());
  state->on_limit_exceeded = Napi::Persistent(info[1].As<Napi::Function>());
  return env.Undefined();
}

// registerSession(clientId, memoryLimit | undefined, expirySeconds | undefined)
Napi::Value register_session(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_thread(env)) return Napi::Value();
  std::string client_id;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();

  SessionOptions options;
  if (!info[1].IsUndefined()) {
    if (!read_size(env, info[1], "memoryLimit", options.limit)) return Napi::Value();
    options.has_limit = true;
  }
  if (!info[2].IsUndefined()) {
    size_t expiry = 0;
    if (!read_size(env, info[2], "expiryInterval", expiry)) return Napi::Value();
    options.has_expiry = true;
    options.expiry_seconds = static_cast<uint32_t>(expiry);
  }

  SessionAllocators allocators;
  bool resumed = false;
  int rc = registry().register_session(thread_state(env)->thread_key, client_id, options,
                                       allocators, resumed);
  if (rc == MQ_ERR_ALLOCATOR_CREATE) {
    ErrorContext context;
    context.client_id = client_id;
    return throw_code(env, rc, "client " + quoted(client_id) + " is registered on another thread",
                      &context);
  }
  if (rc != MQ_SUCCESS) {
    return throw_code(env, rc, "could not register client " + quoted(client_id));
  }
  return allocators_array(env, allocators, resumed);
}

Napi::Value not_found(Napi::Env env, const std::string& client_id) {
  ErrorContext context;
  context.client_id = client_id;
  return throw_code(env, MQ_ERR_ALLOCATOR_NOT_FOUND,
                    "client " + quoted(client_id) + " has no session on this thread", &context);
}

Napi::Value unregister_session(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_thread(env)) return Napi::Value();
  std::string client_id;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();

  int rc = registry().unregister_session(thread_state(env)->thread_key, client_id);
  if (rc != MQ_SUCCESS) return not_found(env, client_id);
  return env.Undefined();
}

// findSession(clientId): the session's allocators, or undefined.
Napi::Value find_session(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_thread(env)) return Napi::Value();
  std::string client_id;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();

  SessionAllocators allocators;
  int rc = registry().find_session(thread_state(env)->thread_key, client_id, allocators);
  if (rc != MQ_SUCCESS) return env.Undefined();
  return allocators_array(env, allocators, true);
}

Napi::Value remove_session(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_thread(env)) return Napi::Value();
  std::string client_id;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();

  ThreadState& state = *thread_state(env);
  int rc = registry().remove_session(state.thread_key, client_id);
  release_removed_allocators(state);
  return Napi::Boolean::New(env, rc == MQ_SUCCESS);
}

Napi::Value cleanup_expired(const Napi::CallbackInfo& info) {
  size_t removed = 0;
  registry().cleanup_expired(removed);
  release_removed_allocators(*thread_state(info.Env()));
  return number(info.Env(), removed);
}

Napi::Value set_client_limit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string client_id;
  size_t limit = 0;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();
  if (!read_size(env, info[1], "limit", limit)) return Napi::Value();

  int rc = registry().set_client_limit(client_id, limit);
  if (rc != MQ_SUCCESS) return throw_code(env, rc, "invalid client id " + quoted(client_id));
  return env.Undefined();
}

Napi::Value clear_client_limit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string client_id;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();

  int rc = registry().clear_client_limit(client_id);
  if (rc != MQ_SUCCESS) return throw_code(env, rc, "invalid client id " + quoted(client_id));
  return env.Undefined();
}

Napi::Value client_limit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string client_id;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();

  size_t limit = 0;
  int rc = registry().client_limit(client_id, limit);
  if (rc != MQ_SUCCESS) return throw_code(env, rc, "invalid client id " + quoted(client_id));
  return number(env, limit);
}

// setClientLimitPatterns([[pattern, limit], ...])
Napi::Value set_client_limit_patterns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) {
    return throw_code(env, MQ_ERR_INVALID_ARGS, "patterns must be an array");
  }
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<LimitPattern> patterns;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value entry = list.Get(i);
    if (!entry.IsArray()) return throw_code(env, MQ_ERR_INVALID_ARGS, "pattern entry must be an array");
    Napi::Array pair = entry.As<Napi::Array>();
    LimitPattern pattern;
    if (!read_string(env, pair.Get(0u), "pattern", pattern.pattern)) return Napi::Value();
    if (!read_size(env, pair.Get(1u), "limit", pattern.limit)) return Napi::Value();
    patterns.push_back(std::move(pattern));
  }
  registry().set_client_limit_patterns(std::move(patterns));
  return env.Undefined();
}

// Getter/setter pairs for one process-wide size setting.
template <size_t (SessionRegistry::*Get)() const, void (SessionRegistry::*Set)(size_t)>
Napi::Value size_setting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0) {
    size_t value = 0;
    if (!read_size(env, info[0], "limit", value)) return Napi::Value();
    (registry().*Set)(value);
  }
  return number(env, (registry().*Get)());
}

Napi::Value default_expiry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0) {
    size_t seconds = 0;
    if (!read_size(env, info[0], "expiry", seconds)) return Napi::Value();
    registry().set_default_expiry(static_cast<uint32_t>(seconds));
  }
  return number(env, registry().default_expiry());
}

// globalLimit(limit?): reads, and with an argument sets, the root's limit.
Napi::Value global_limit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0) {
    size_t limit = 0;
    if (!read_size(env, info[0], "limit", limit)) return Napi::Value();
    registry().root()->set_limit(limit);
  }
  return number(env, registry().root()->limit());
}

Napi::Value global_usage(const Napi::CallbackInfo& info) {
  return number(info.Env(), registry().root()->usage());
}

Napi::Object usage_object(Napi::Env env, const ClientUsage& usage) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("clientId", usage.client_id);
  object.Set("threadId", usage.thread_id);
  object.Set("usage", static_cast<double>(usage.usage));
  object.Set("limit", static_cast<double>(usage.limit));
  object.Set("connected", usage.connected);
  return object;
}

Napi::Value client_usages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<ClientUsage> usages = registry().client_usages();
  Napi::Array result = Napi::Array::New(env, usages.size());
  for (size_t i = 0; i < usages.size(); i++) {
    result.Set(static_cast<uint32_t>(i), usage_object(env, usages[i]));
  }
  return result;
}

// clientUsage(clientId): the client's usage record, or undefined.
Napi::Value client_usage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string client_id;
  if (!read_string(env, info[0], "clientId", client_id)) return Napi::Value();

  ClientUsage usage;
  if (registry().client_usage(client_id, usage) != MQ_SUCCESS) return env.Undefined();
  return usage_object(env, usage);
}

Napi::Value tag_usages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array result = Napi::Array::New(env, MEM_TAG_COUNT);
  for (int32_t tag = 0; tag < MEM_TAG_COUNT; tag++) {
    result.Set(static_cast<uint32_t>(tag), number(env, tag_usage(static_cast<mq_memory_tag>(tag))));
  }
  return result;
}

Napi::Value limit_violations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array result = Napi::Array::New(env, MEM_TAG_COUNT);
  for (int32_t tag = 0; tag < MEM_TAG_COUNT; tag++) {
    double total = static_cast<double>(tag_refusals_total(static_cast<mq_memory_tag>(tag)));
    result.Set(static_cast<uint32_t>(tag), Napi::Number::New(env, total));
  }
  return result;
}

Napi::Object describe_node(Napi::Env env, const MQTTAllocator& node) {
  AllocatorStats stats = node.stats();
  Napi::Object object = Napi::Object::New(env);
  object.Set("id", node.id());
  object.Set("tag", static_cast<double>(node.tag()));
  object.Set("usage", static_cast<double>(stats.usage));
  object.Set("peak", static_cast<double>(stats.peak));
  object.Set("limit", static_cast<double>(stats.limit));
  object.Set("selfUsage", static_cast<double>(stats.self_usage));
  object.Set("liveBlocks", static_cast<double>(stats.live_blocks));
  std::vector<std::shared_ptr<MQTTAllocator>> children = node.children();
  Napi::Array list = Napi::Array::New(env, children.size());
  for (size_t i = 0; i < children.size(); i++) {
    list.Set(static_cast<uint32_t>(i), describe_node(env, *children[i]));
  }
  object.Set("children", list);
  return object;
}

Napi::Value hierarchy(const Napi::CallbackInfo& info) {
  return describe_node(info.Env(), *registry().root());
}

// threadStats(): this thread's usage by component.
Napi::Value thread_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<ThreadState>& state = thread_state(env);
  size_t session = 0;
  size_t queue = 0;
  size_t worker = 0;
  size_t total = 0;
  if (state->initialized) {
    total = state->thread_allocator->usage();
    for (const auto& client : state->thread_allocator->children()) {
      session += client->stats().self_usage;
      std::shared_ptr<MQTTAllocator> child;
      if (client->find_child("queue", child) == MQ_SUCCESS) queue += child->usage();
      if (client->find_child("worker", child) == MQ_SUCCESS) worker += child->usage();
    }
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("sessionUsage", number(env, session));
  result.Set("queueUsage", number(env, queue));
  result.Set("workerUsage", number(env, worker));
  result.Set("cacheUsage", number(env, state->cache_bytes));
  result.Set("totalUsage", number(env, total + state->cache_bytes));
  result.Set("sessionCount", number(env, state->initialized ? registry().session_count(state->thread_key) : 0));
  result.Set("liveBuffers", number(env, state->live.size()));
  return result;
}

Napi::Value backend_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Backend& backend = Backend::instance();
  BackendInfo details = backend.info();
  Napi::Object result = Napi::Object::New(env);
  result.Set("name", details.name);
  result.Set("source", details.source);
  if (!details.version.empty()) result.Set("version", details.version);
  if (!details.library.empty()) result.Set("library", details.library);
  if (!details.fallback_reason.empty()) result.Set("fallbackReason", details.fallback_reason);

  BackendHeapStats heap = backend.heap_stats();
  if (heap.has_stats) {
    Napi::Object figures = Napi::Object::New(env);
    figures.Set("currentAllocatedBytes", number(env, heap.current_allocated_bytes));
    figures.Set("heapSize", number(env, heap.heap_size));
    figures.Set("totalPhysicalBytes", number(env, heap.total_physical_bytes));
    figures.Set("pageheapFreeBytes", number(env, heap.pageheap_free_bytes));
    figures.Set("pageheapUnmappedBytes", number(env, heap.pageheap_unmapped_bytes));
    figures.Set("centralCacheFreeBytes", number(env, heap.central_cache_free_bytes));
    figures.Set("threadCacheFreeBytes", number(env, heap.thread_cache_free_bytes));
    result.Set("heap", figures);
  }
  return result;
}

Napi::Value select_backend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!read_string(env, info[0], "backend", name)) return Napi::Value();

  int rc = Backend::instance().select(name);
  if (rc == MQ_ERR_INVALID_ARGS) {
    return throw_code(env, rc, "unknown backend '" + name + "' (expected system, tcmalloc or auto)");
  }
  if (rc != MQ_SUCCESS) {
    return throw_code(env, rc, "the backend cannot change while blocks are allocated");
  }
  return env.Undefined();
}

// claimBackendNotice(): true for the first caller in the process, so the
// backend choice is logged once, not once per thread.
Napi::Value claim_backend_notice(const Napi::CallbackInfo& info) {
  static std::atomic<bool> claimed{false};
  return Napi::Boolean::New(info.Env(), !claimed.exchange(true));
}

Napi::Value release_free_memory(const Napi::CallbackInfo& info) {
  Backend::instance().release_free_memory();
  return info.Env().Undefined();
}

Napi::Value message_cache(const Napi::CallbackInfo& info) {
  return AllocatorObject::wrap(info.Env(), registry().message_cache());
}

}  // namespace

void export_registry_functions(Napi::Env env, Napi::Object exports) {
  struct Entry {
    const char* name;
    Napi::Function::Callback callback;
  };
  const Entry entries[] = {
      {"initThread", init_thread},
      {"setHooks", set_hooks},
      {"registerSession", register_session},
      {"unregisterSession", unregister_session},
      {"findSession", find_session},
      {"removeSession", remove_session},
      {"cleanupExpired", cleanup_expired},
      {"setClientLimit", set_client_limit},
      {"clearClientLimit", clear_client_limit},
      {"clientLimit", client_limit},
      {"setClientLimitPatterns", set_client_limit_patterns},
      {"defaultClientLimit", size_setting<&SessionRegistry::default_client_limit,
                                          &SessionRegistry::set_default_client_limit>},
      {"threadLimit", size_setting<&SessionRegistry::thread_limit, &SessionRegistry::set_thread_limit>},
      {"defaultExpiry", default_expiry},
      {"globalLimit", global_limit},
      {"globalUsage", global_usage},
      {"clientUsages", client_usages},
      {"clientUsage", client_usage},
      {"tagUsage", tag_usages},
      {"limitViolations", limit_violations},
      {"hierarchy", hierarchy},
      {"threadStats", thread_stats},
      {"backendInfo", backend_info},
      {"selectBackend", select_backend},
      {"claimBackendNotice", claim_backend_notice},
      {"releaseFreeMemory", release_free_memory},
      {"messageCache", message_cache},
      {"isSessionBuffer", is_session_buffer},
      {"externalBufferFloor", external_buffer_floor},
      {"allocatorToken", allocator_token},
  };
  for (const Entry& entry : entries) {
    exports.Set(entry.name, Napi::Function::New(env, entry.callback, entry.name));
  }

  export_hot_function(env, exports, "allocateFrom", allocate_from);
  export_hot_function(env, exports, "roomFor", room_for);
  export_hot_function(env, exports, "release", release_buffer);
  export_hot_function(env, exports, "releaseFrom", release_from);
}

}  // namespace mqsa
