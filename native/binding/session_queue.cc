#include "session_queue.h"

#include <atomic>
#include <cstdint>
#include <cstring>

#include "allocator_object.h"
#include "buffers.h"
#include "copy_out.h"
#include "errors.h"
#include "hot_call.h"
#include "js_errors.h"
#include "payload_blocks.h"
#include "thread_state.h"

namespace mqsa {

void NativeQueue::clear() {
  for (QueuedBlock& block : blocks) block.allocator->deallocate(block.data, block.usable, *thread->counters);
  blocks.clear();
  charged = 0;
}

namespace {

// Payloads dropped under 'drop-oldest' by the queues of every thread since
// the process started.
std::atomic<uint64_t> g_queue_drops{0};

// Runs on the owning thread when the queue object is collected, or during
// teardown after the cleanup hook has already cleared the queue.
void finalize_queue(napi_env /*env*/, void* data, void* /*hint*/) {
  NativeQueue* queue = static_cast<NativeQueue*>(data);
  queue->clear();
  queue->thread->queues.erase(queue);
  delete queue;
}

// Returns the queue behind `value`, or throws and returns null.
NativeQueue* queue_argument(Napi::Env env, napi_value value) {
  void* data = nullptr;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == nullptr) {
    throw_code(env, MQ_ERR_INVALID_ARGS, "expected a queue handle");
    return nullptr;
  }
  return static_cast<NativeQueue*>(data);
}

NativeQueue* queue_argument(const Napi::CallbackInfo& info, size_t index) {
  return queue_argument(info.Env(), info[index]);
}

// queueCreate(): a new empty queue.
Napi::Value queue_create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<ThreadState>& state = thread_state(env);
  NativeQueue* queue = new NativeQueue();
  queue->thread = state;
  napi_value external = nullptr;
  if (napi_create_external(env, queue, finalize_queue, nullptr, &external) != napi_ok) {
    delete queue;
    return throw_code(env, MQ_ERR_ALLOCATOR, "could not create a queue handle");
  }
  state->queues.insert(queue);
  return Napi::Value(env, external);
}

// queuePush(queue, allocatorToken, payload): copies the payload into a new
// block. Returns the bytes charged, or 0 when a limit refused it (reported
// like any refused allocation). A hot callback (see hot_call.h).
napi_value queue_push(napi_env raw_env, napi_callback_info info) {
  HotCall<3> call(raw_env, info);
  Napi::Env env = call.env;
  NativeQueue* queue = queue_argument(env, call.args[0]);
  if (queue == nullptr) return nullptr;
  const std::shared_ptr<MQTTAllocator>* token = read_token(env, call.args[1]);
  if (token == nullptr) return nullptr;
  const std::shared_ptr<MQTTAllocator>& allocator = *token;

  QueuedBlock block;
  CopyResult result =
      copy_payload_in(env, call.args[2], allocator, *queue->thread->counters, block.data, block.size, block.usable);
  if (result == CopyResult::kRefused) return Napi::Number::New(env, 0);
  if (result == CopyResult::kFailed) return nullptr;

  block.allocator = allocator;
  queue->charged += block.usable;
  queue->blocks.push_back(std::move(block));
  return Napi::Number::New(env, static_cast<double>(queue->blocks.back().usable));
}

// queueShift(queue, target, dropped): removes the oldest payload and frees
// its block, copying the payload into `target` (a Buffer of exactly its
// size) unless `target` is undefined. The caller creates the target in
// JavaScript, which is much cheaper than a Buffer made here. With `dropped`
// true, the payload is counted as dropped. A hot callback (see hot_call.h).
napi_value queue_shift(napi_env raw_env, napi_callback_info info) {
  HotCall<3> call(raw_env, info);
  Napi::Env env = call.env;
  NativeQueue* queue = queue_argument(env, call.args[0]);
  if (queue == nullptr) return nullptr;
  if (queue->blocks.empty()) {
    return throw_code(env, MQ_ERR_INVALID_ARGS, "the queue is empty");
  }

  QueuedBlock& block = queue->blocks.front();
  void* target = nullptr;
  size_t length = 0;
  napi_typedarray_type type;
  bool copy = napi_get_typedarray_info(env, call.args[1], &type, &length, &target, nullptr, nullptr) == napi_ok;
  // Checked only when the target is not a typed array, which is rare.
  bool drop = !copy && Napi::Value(env, call.args[1]).IsUndefined();
  if (!drop && (!copy || type != napi_uint8_array || length != block.size)) {
    return throw_code(env, MQ_ERR_INVALID_ARGS,
                      "expected a Buffer of " + std::to_string(block.size) + " bytes to copy into");
  }
  if (copy && block.size != 0) copy_out(target, block.data, block.size);

  block.allocator->deallocate(block.data, block.usable, *queue->thread->counters);
  queue->charged -= block.usable;
  queue->blocks.pop_front();

  // Anything but true, including a missing argument, is a plain shift.
  bool dropped = false;
  napi_get_value_bool(raw_env, call.args[2], &dropped);
  if (dropped) g_queue_drops.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

// queueDrops(): payloads dropped under 'drop-oldest' by the queues of every
// thread since the process started.
Napi::Value queue_drops(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(g_queue_drops.load(std::memory_order_relaxed)));
}

// queuePeek(queue): a Buffer copy of the oldest payload, or undefined.
Napi::Value queue_peek(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NativeQueue* queue = queue_argument(info, 0);
  if (queue == nullptr) return Napi::Value();
  if (queue->blocks.empty()) return env.Undefined();

  const QueuedBlock& block = queue->blocks.front();
  return Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(block.data), block.size);
}

Napi::Value queue_clear(const Napi::CallbackInfo& info) {
  NativeQueue* queue = queue_argument(info, 0);
  if (queue == nullptr) return Napi::Value();

  queue->clear();
  return info.Env().Undefined();
}

// queueCharged(queue): usable bytes charged for the queue's payloads.
Napi::Value queue_charged(const Napi::CallbackInfo& info) {
  NativeQueue* queue = queue_argument(info, 0);
  if (queue == nullptr) return Napi::Value();

  return Napi::Number::New(info.Env(), static_cast<double>(queue->charged));
}

}  // namespace

void export_queue_functions(Napi::Env env, Napi::Object exports) {
  exports.Set("queueCreate", Napi::Function::New(env, queue_create, "queueCreate"));
  export_hot_function(env, exports, "queuePush", queue_push);
  export_hot_function(env, exports, "queueShift", queue_shift);
  exports.Set("queuePeek", Napi::Function::New(env, queue_peek, "queuePeek"));
  exports.Set("queueClear", Napi::Function::New(env, queue_clear, "queueClear"));
  exports.Set("queueCharged", Napi::Function::New(env, queue_charged, "queueCharged"));
  exports.Set("queueDrops", Napi::Function::New(env, queue_drops, "queueDrops"));
}

}  // namespace mqsa
