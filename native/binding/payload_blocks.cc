#include "payload_blocks.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "allocator_object.h"
#include "copy_out.h"
#include "errors.h"
#include "hot_call.h"
#include "js_errors.h"
#include "thread_state.h"

namespace mqsa {

constexpr unsigned kIndexBits = PayloadBlocks::kIndexBits;
constexpr unsigned kGenerationBits = 18;
constexpr unsigned kTagBits = 9;
constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;
constexpr uint32_t kGenerationMask = (uint32_t{1} << kGenerationBits) - 1;
constexpr uint64_t kTagMask = (uint64_t{1} << kTagBits) - 1;
static_assert(kIndexBits + kGenerationBits + kTagBits == 53, "a handle must fit a double's integer range");
// 2^53: every handle is below it, so a double represents each one exactly.
constexpr double kHandleLimit = 9007199254740992.0;

namespace {

// Counts the block sets created, one per thread, to tag them in turn.
std::atomic<uint64_t> g_next_tag{0};

}  // namespace

PayloadBlocks::PayloadBlocks() : tag_(g_next_tag.fetch_add(1, std::memory_order_relaxed) & kTagMask) {}

double PayloadBlocks::add(Block& block) {
  uint32_t index = 0;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else if (slots_.size() < kMaxSlots) {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  } else {
    return 0;
  }
  Slot& slot = slots_[index];
  slot.block = std::move(block);
  slot.used = true;
  uint64_t handle = (tag_ << (kIndexBits + kGenerationBits)) | (uint64_t{slot.generation} << kIndexBits) | (index + 1);
  return static_cast<double>(handle);
}

PayloadBlocks::Slot* PayloadBlocks::live_slot(double handle) {
  if (!(handle >= 1) || !(handle < kHandleLimit) || std::floor(handle) != handle) return nullptr;
  uint64_t bits = static_cast<uint64_t>(handle);
  if ((bits >> (kIndexBits + kGenerationBits)) != tag_) return nullptr;
  uint64_t index = (bits & kIndexMask) - 1;
  uint64_t generation = (bits >> kIndexBits) & kGenerationMask;
  if (index >= slots_.size()) return nullptr;
  Slot& slot = slots_[index];
  if (!slot.used || slot.generation != generation) return nullptr;
  return &slot;
}

PayloadBlocks::Block* PayloadBlocks::find(double handle) {
  Slot* slot = live_slot(handle);
  return slot == nullptr ? nullptr : &slot->block;
}

bool PayloadBlocks::free(double handle, ThreadCounters& counters) {
  Slot* slot = live_slot(handle);
  if (slot == nullptr) return false;

  slot->block.allocator->deallocate(slot->block.data, slot->block.usable, counters);
  slot->block = Block();
  slot->used = false;
  slot->generation = (slot->generation + 1) & kGenerationMask;
  free_slots_.push_back(static_cast<uint32_t>(slot - slots_.data()));
  return true;
}

void PayloadBlocks::free_all(ThreadCounters& counters) {
  for (Slot& slot : slots_) {
    if (!slot.used) continue;
    slot.block.allocator->deallocate(slot.block.data, slot.block.usable, counters);
    slot.block = Block();
    slot.used = false;
  }
  slots_.clear();
  free_slots_.clear();
}

CopyResult copy_payload_in(Napi::Env env, napi_value payload, const std::shared_ptr<MQTTAllocator>& allocator,
                           ThreadCounters& counters, void*& data, size_t& size, size_t& usable) {
  void* source = nullptr;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, payload, &type, &size, &source, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    throw_code(env, MQ_ERR_INVALID_ARGS, "expected a Buffer or Uint8Array payload");
    return CopyResult::kFailed;
  }

  ErrorContext context;
  int rc = allocator->allocate(size, data, usable, &context.refusal, counters);
  if (rc == MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED) {
    report_refusal(env, context, *allocator, size);
    return CopyResult::kRefused;
  }
  if (rc != MQ_SUCCESS) {
    throw_allocation_failure(env, rc, *allocator, size);
    return CopyResult::kFailed;
  }

  if (size != 0) std::memcpy(data, source, size);
  return CopyResult::kStored;
}

namespace {

bool read_handle(Napi::Env env, napi_value value, double& handle) {
  // napi_get_value_double rejects anything but a number, without coercion.
  if (napi_get_value_double(env, value, &handle) == napi_ok) return true;
  throw_code(env, MQ_ERR_INVALID_ARGS, "expected a payload handle (a number)");
  return false;
}

bool read_handle(const Napi::CallbackInfo& info, double& handle) { return read_handle(info.Env(), info[0], handle); }

// Throws for a handle that names no live payload of this thread.
Napi::Value throw_not_live(Napi::Env env, double handle) {
  // JavaScript's spelling of the number, for the message.
  char text[32] = "NaN";
  if (!std::isnan(handle)) std::snprintf(text, sizeof(text), "%.17g", handle);
  if (!(handle >= 1) || !(handle < kHandleLimit) || std::floor(handle) != handle) {
    return throw_code(env, MQ_ERR_INVALID_ARGS, std::string("invalid payload handle ") + text +
                                                    ": expected a positive safe integer that storePayload returned");
  }
  return throw_code(env, MQ_ERR_INVALID_ARGS, std::string("payload handle ") + text +
                                                  " is not live (freed already, never stored, or from another thread)");
}

// payloadStore(token, payload): copies the payload into a new block of the
// allocator. Returns its handle, or 0 when a limit refused it (reported like
// any refused allocation). A hot callback (see hot_call.h).
napi_value payload_store(napi_env raw_env, napi_callback_info info) {
  HotCall<2> call(raw_env, info);
  Napi::Env env = call.env;
  const std::shared_ptr<MQTTAllocator>* token = read_token(env, call.args[0]);
  if (token == nullptr) return nullptr;
  const std::shared_ptr<MQTTAllocator>& allocator = *token;

  ThreadState& state = **call.state;
  PayloadBlocks::Block block;
  CopyResult result =
      copy_payload_in(env, call.args[1], allocator, *state.counters, block.data, block.size, block.usable);
  if (result == CopyResult::kRefused) return Napi::Number::New(env, 0);
  if (result == CopyResult::kFailed) return nullptr;

  block.allocator = allocator;
  state.last_payload_charge = static_cast<double>(block.usable);
  double handle = state.payloads.add(block);
  if (handle == 0) {
    // NOTE: no test fills kMaxSlots slots (it would take gigabytes), so
    // this branch has been read but never run.
    block.allocator->deallocate(block.data, block.usable, *state.counters);
    return throw_code(env, MQ_ERR_ALLOCATOR,
                      "too many stored payloads: this thread has " + std::to_string(PayloadBlocks::kMaxSlots) +
                          ", the maximum for one thread; free some first");
  }
  return Napi::Number::New(env, handle);
}

// payloadSize(handle): the payload's size in bytes.
Napi::Value payload_size(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double handle = 0;
  if (!read_handle(info, handle)) return Napi::Value();

  PayloadBlocks::Block* block = thread_state(env)->payloads.find(handle);
  if (block == nullptr) return throw_not_live(env, handle);
  return Napi::Number::New(env, static_cast<double>(block->size));
}

// Copies the payload of `block` into `target`, a Buffer of exactly its
// size. Returns false, having thrown, for any other target.
bool copy_payload_out(Napi::Env env, const PayloadBlocks::Block& block, napi_value target) {
  void* data = nullptr;
  size_t length = 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, target, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array || length != block.size) {
    // The JavaScript layer makes the target from the size its caller gave.
    throw_code(env, MQ_ERR_INVALID_ARGS,
               "the payload has " + std::to_string(block.size) + " bytes, not the " + std::to_string(length) +
                   " given as its size");
    return false;
  }
  if (block.size != 0) copy_out(data, block.data, block.size);
  return true;
}

// payloadRead(handle, target): copies the payload into `target`, a Buffer
// of exactly its size.
Napi::Value payload_read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double handle = 0;
  if (!read_handle(info, handle)) return Napi::Value();

  PayloadBlocks::Block* block = thread_state(env)->payloads.find(handle);
  if (block == nullptr) return throw_not_live(env, handle);
  if (!copy_payload_out(env, *block, info[1])) return Napi::Value();
  return env.Undefined();
}

// payloadTake(handle, target): payloadRead, then payloadFree, in one call.
// A target of the wrong size throws and frees nothing. A hot callback (see
// hot_call.h).
napi_value payload_take(napi_env raw_env, napi_callback_info info) {
  HotCall<2> call(raw_env, info);
  Napi::Env env = call.env;
  double handle = 0;
  if (!read_handle(env, call.args[0], handle)) return nullptr;

  ThreadState& state = **call.state;
  PayloadBlocks::Block* block = state.payloads.find(handle);
  if (block == nullptr) return throw_not_live(env, handle);
  if (!copy_payload_out(env, *block, call.args[1])) return nullptr;
  state.payloads.free(handle, *state.counters);
  return nullptr;
}

// payloadFree(handle): frees the block. Throws, freeing nothing, for a
// handle that is not live. A hot callback (see hot_call.h).
napi_value payload_free(napi_env raw_env, napi_callback_info info) {
  HotCall<1> call(raw_env, info);
  Napi::Env env = call.env;
  double handle = 0;
  if (!read_handle(env, call.args[0], handle)) return nullptr;

  ThreadState& state = **call.state;
  if (!state.payloads.free(handle, *state.counters)) return throw_not_live(env, handle);
  return nullptr;
}

}  // namespace

void export_payload_functions(Napi::Env env, Napi::Object exports) {
  export_hot_function(env, exports, "payloadStore", payload_store);
  // One number over the thread's state: the bytes charged for the payload
  // stored last. The state outlives every JavaScript object of the thread.
  ThreadState& state = *thread_state(env);
  Napi::ArrayBuffer charge = Napi::ArrayBuffer::New(env, &state.last_payload_charge, sizeof(double));
  exports.Set("payloadCharge", Napi::Float64Array::New(env, 1, charge, 0));
  exports.Set("payloadSize", Napi::Function::New(env, payload_size, "payloadSize"));
  exports.Set("payloadRead", Napi::Function::New(env, payload_read, "payloadRead"));
  export_hot_function(env, exports, "payloadFree", payload_free);
  export_hot_function(env, exports, "payloadTake", payload_take);
}

}  // namespace mqsa
