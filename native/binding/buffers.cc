#include "buffers.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "allocator_object.h"

#include "errors.h"
#include "hot_call.h"
#include "js_errors.h"
#include "thread_state.h"

namespace mqsa {

// Spare records kept per thread: enough for a burst of buffers released and
// allocated again, without holding memory after a spike.
constexpr size_t kMaxSpareRecords = 4096;

int free_record(BufferRecord* record) {
  if (record->released) return MQ_SUCCESS;

  record->released = true;
  if (record->cache) record->thread->cache_bytes -= record->usable;
  record->thread->live.erase(record->data);
  int rc = record->allocator->deallocate(record->data, record->usable, *record->thread->counters);
  unref_record(record);
  return rc;
}

void unref_record(BufferRecord* record) {
  record->owners -= 1;
  if (record->owners != 0) return;

  // A spare record keeps its share of the thread state and its allocator, so
  // reusing it for the same allocator needs no atomic reference-count update.
  // release_removed_allocators drops allocators that were removed, and
  // teardown deletes the spares.
  ThreadState& thread = *record->thread;
  if (!thread.torn_down && thread.spare_records.size() < kMaxSpareRecords) {
    thread.spare_records.push_back(record);
  } else {
    delete record;
  }
}

void release_removed_allocators(ThreadState& state) {
  for (BufferRecord* record : state.spare_records) {
    if (record->allocator && record->allocator->detached()) record->allocator.reset();
  }
}

void delete_spare_records(ThreadState& state) {
  std::vector<BufferRecord*> spares;
  spares.swap(state.spare_records);
  for (BufferRecord* record : spares) delete record;
}

static BufferRecord* new_record(const std::shared_ptr<ThreadState>& state) {
  if (state->spare_records.empty()) {
    BufferRecord* record = new BufferRecord();
    record->thread = state;
    return record;
  }
  BufferRecord* record = state->spare_records.back();
  state->spare_records.pop_back();
  // Spares have often left the cache by the time they are reused. Fetching
  // the next one now hides that wait behind the rest of this allocation.
  if (!state->spare_records.empty()) __builtin_prefetch(state->spare_records.back(), 1);
  record->released = false;
  record->owners = 2;
  return record;
}

// Runs on the owning thread, on an event-loop turn after V8 dropped the
// Buffer (or during environment teardown). The block may have been freed
// already by release() or teardown; then only the finalizer's ownership
// is dropped.
static void finalize_buffer(napi_env /*env*/, void* /*data*/, void* hint) {
  BufferRecord* record = static_cast<BufferRecord*>(hint);
  free_record(record);
  unref_record(record);
}

Napi::Value allocate_buffer(Napi::Env env, const std::shared_ptr<MQTTAllocator>& allocator,
                            size_t size, bool throw_on_limit, bool cache) {
  return allocate_buffer(env, thread_state(env), allocator, size, throw_on_limit, cache);
}

Napi::Value allocate_buffer(Napi::Env env, std::shared_ptr<ThreadState>& state,
                            const std::shared_ptr<MQTTAllocator>& allocator, size_t size,
                            bool throw_on_limit, bool cache) {
  void* data = nullptr;
  size_t usable = 0;
  ErrorContext context;
  int rc = allocator->allocate(size, data, usable, &context.refusal, *state->counters);
  if (rc == MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED) {
    report_refusal(env, context, *allocator, size);
    if (env.IsExceptionPending() || !throw_on_limit) return env.Undefined();
    std::string detail = "allocation of " + std::to_string(size) + " bytes from allocator '" +
                         allocator->id() + "' refused";
    return throw_code(env, rc, detail, &context);
  }
  if (rc != MQ_SUCCESS) return throw_allocation_failure(env, rc, *allocator, size);

  BufferRecord* record = new_record(state);
  record->allocator = allocator;
  record->data = data;
  record->usable = usable;
  record->length = size;
  record->cache = cache;
  // Entered before Node creates the Buffer, while the table is still in the
  // cache; taken out again if that fails.
  state->live.insert(data, record);

  // A zero-length external Buffer has no data pointer to find it by again, so
  // an empty allocation is returned as a one-byte ArrayBuffer, which the
  // TypeScript layer wraps in an empty Buffer view.
  napi_value buffer = nullptr;
  napi_status status =
      size == 0 ? napi_create_external_arraybuffer(env, data, 1, finalize_buffer, record, &buffer)
                : napi_create_external_buffer(env, size, data, finalize_buffer, record, &buffer);
  if (status != napi_ok) {
    // NOTE: runtimes with the V8 sandbox (Electron 21 and later) refuse
    // external buffers (napi_no_external_buffers_allowed); this package
    // does not support them yet.
    state->live.erase(data);
    allocator->deallocate(data, usable, *state->counters);
    unref_record(record);
    unref_record(record);
    return throw_code(env, MQ_ERR_ALLOCATOR,
                      "could not create an external Buffer (napi status " +
                          std::to_string(static_cast<int>(status)) + ")");
  }

  if (cache) state->cache_bytes += usable;
  return Napi::Value(env, buffer);
}

// Bytes that `value` covers: a typed array, a DataView or an ArrayBuffer.
struct ViewBytes {
  void* data = nullptr;  // null when detached (or empty)
  size_t offset = 0;
  size_t bytes = 0;
  bool whole_buffer = false;  // `value` is the ArrayBuffer itself
};

static size_t element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    default:
      return 1;
  }
}

// Reads what `value` covers. Returns false for anything that is not a view
// or an ArrayBuffer.
static bool view_bytes(napi_env env, napi_value value, napi_value* arraybuffer, ViewBytes& out) {
  napi_typedarray_type type;
  size_t length = 0;
  if (napi_get_typedarray_info(env, value, &type, &length, &out.data, arraybuffer, &out.offset) == napi_ok) {
    out.bytes = length * element_size(type);
    return true;
  }
  bool is = false;
  if (napi_is_dataview(env, value, &is) == napi_ok && is) {
    return napi_get_dataview_info(env, value, &out.bytes, &out.data, arraybuffer, &out.offset) == napi_ok;
  }
  if (napi_is_arraybuffer(env, value, &is) == napi_ok && is) {
    *arraybuffer = value;
    out.whole_buffer = true;
    return napi_get_arraybuffer_info(env, value, &out.data, &out.bytes) == napi_ok;
  }
  return false;
}

// Finds the live record behind `value`, or throws and returns nullptr.
// `value` is the Buffer that allocate returned, any view of all of its
// bytes (an empty allocation's view may cover its one-byte ArrayBuffer), or
// that ArrayBuffer. The block starts at the view's data pointer
// minus its byte offset. A detached view has no data pointer.
static BufferRecord* find_record(Napi::Env env, ThreadState& state, napi_value value,
                                 napi_value* arraybuffer, bool throw_if_missing) {
  // The common case first, with one Node-API call: a typed array at offset
  // 0 with as many elements as the Buffer has bytes. Its elements are
  // bytes, since larger ones would not fit, so the type is not requested.
  size_t length = 0;
  void* view_data = nullptr;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, value, nullptr, &length, &view_data, arraybuffer, &offset) == napi_ok &&
      view_data != nullptr && offset == 0) {
    BufferRecord* record = state.live.find(view_data);
    if (record != nullptr && length == record->length) return record;
  }

  ViewBytes view;
  if (!view_bytes(env, value, arraybuffer, view)) {
    if (throw_if_missing) throw_code(env, MQ_ERR_INVALID_ARGS, "expected a Buffer from this package");
    return nullptr;
  }

  bool detached = view.data == nullptr;
  if (!detached) {
    void* data = static_cast<char*>(view.data) - view.offset;
    BufferRecord* record = state.live.find(data);
    if (record != nullptr && (view.whole_buffer || (view.offset == 0 && view.bytes >= record->length))) {
      return record;
    }
    if (record != nullptr) {
      // Releasing detaches the whole block, so a view of part of it must not
      // be taken for the Buffer itself.
      if (throw_if_missing) {
        throw_code(env, MQ_ERR_INVALID_ARGS,
                   "expected the whole Buffer that allocate returned, got a view of part of it (byteOffset " +
                       std::to_string(view.offset) + ", " + std::to_string(view.bytes) + " bytes; the Buffer has " +
                       std::to_string(record->length) + " bytes)");
      }
      return nullptr;
    }
  }

  if (throw_if_missing) {
    // An empty foreign Buffer has no data pointer either; only the error path
    // pays for telling the two apart.
    if (detached) napi_is_detached_arraybuffer(env, *arraybuffer, &detached);
    throw_code(env, MQ_ERR_INVALID_ARGS,
               detached ? "the buffer was already released (its memory is detached)"
                        : "the buffer was not allocated by this package on this thread");
  }
  return nullptr;
}

namespace {

// Detaches the ArrayBuffer of `record`, then frees its block.
napi_value release_record(Napi::Env env, BufferRecord* record, napi_value arraybuffer) {
  // Detach first: from here on no JavaScript view can reach the block.
  napi_status status = napi_detach_arraybuffer(env, arraybuffer);
  if (status != napi_ok) {
    return throw_code(env, MQ_ERR_ALLOCATOR, "the buffer could not be detached; nothing was freed");
  }
  int rc = free_record(record);
  if (rc != MQ_SUCCESS) return throw_code(env, rc, "the block could not be freed");
  return nullptr;
}

// Quotes an allocator's id for a message, with its session's id for a
// session's queue or worker allocator, since every session has one of each.
std::string quoted_name(const MQTTAllocator& allocator) {
  std::string name = "\"" + allocator.id() + "\"";
  const std::shared_ptr<MQTTAllocator>& parent = allocator.parent();
  if (allocator.is_component() && parent) name += " of \"" + parent->id() + "\"";
  return name;
}

// True when `node` is `ancestor` or lies below it.
bool is_at_or_below(const MQTTAllocator* node, const MQTTAllocator* ancestor) {
  for (; node != nullptr; node = node->parent().get()) {
    if (node == ancestor) return true;
  }
  return false;
}

}  // namespace

napi_value release_buffer(napi_env raw_env, napi_callback_info info) {
  HotCall<1> call(raw_env, info);
  Napi::Env env = call.env;

  napi_value arraybuffer = nullptr;
  BufferRecord* record = find_record(env, **call.state, call.args[0], &arraybuffer, true);
  if (record == nullptr) return nullptr;
  return release_record(env, record, arraybuffer);
}

napi_value release_from(napi_env raw_env, napi_callback_info info) {
  HotCall<2> call(raw_env, info);
  Napi::Env env = call.env;
  const std::shared_ptr<MQTTAllocator>* token = read_token(env, call.args[0]);
  if (token == nullptr) return nullptr;

  napi_value arraybuffer = nullptr;
  BufferRecord* record = find_record(env, **call.state, call.args[1], &arraybuffer, true);
  if (record == nullptr) return nullptr;
  if (!is_at_or_below(record->allocator.get(), token->get())) {
    return throw_code(env, MQ_ERR_INVALID_ARGS,
                      "the buffer belongs to allocator " + quoted_name(*record->allocator) +
                          ", which is neither allocator " + quoted_name(**token) +
                          " nor below it; nothing was freed. Release it through its own allocator, or with release()");
  }
  return release_record(env, record, arraybuffer);
}

Napi::Value is_session_buffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value arraybuffer = nullptr;
  BufferRecord* record = find_record(env, *thread_state(env), info[0], &arraybuffer, false);
  return Napi::Boolean::New(env, record != nullptr);
}

// The cost Node itself puts on a session buffer, for the benchmarks: one
// external Buffer over a malloc'd block, with a finalizer that frees the
// block, and no accounting. It is detached at once and nothing is returned,
// unless `keep` is true: then the Buffer is returned alive, for measuring
// the memory of a live one.
Napi::Value external_buffer_floor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t size = 0;
  if (!read_size(env, info[0], "size", size)) return Napi::Value();
  bool keep = false;
  if (napi_get_value_bool(env, info[1], &keep) != napi_ok) keep = false;

  void* data = std::malloc(size == 0 ? 1 : size);
  napi_value buffer = nullptr;
  napi_value arraybuffer = nullptr;
  auto free_block = [](napi_env, void* block, void*) { std::free(block); };
  if (napi_create_external_buffer(env, size == 0 ? 1 : size, data, free_block, nullptr, &buffer) != napi_ok) {
    std::free(data);
    return throw_code(env, MQ_ERR_ALLOCATOR, "could not create an external Buffer");
  }
  if (keep) return Napi::Value(env, buffer);

  napi_get_typedarray_info(env, buffer, nullptr, nullptr, nullptr, &arraybuffer, nullptr);
  napi_detach_arraybuffer(env, arraybuffer);
  return env.Undefined();
}

void release_all_buffers(ThreadState& state) {
  // free_record erases from the table, so iterate over a copy.
  std::vector<BufferRecord*> records;
  records.reserve(state.live.size());
  state.live.for_each([&records](BufferRecord* record) { records.push_back(record); });
  for (BufferRecord* record : records) free_record(record);
}

}  // namespace mqsa
