// Calls made once per buffer or per message are plain Node-API callbacks:
// they skip node-addon-api's per-call wrapper, and their function data is
// the environment's state, which saves an instance-data lookup per call.
#pragma once

#include <napi.h>

#include <cstddef>
#include <memory>

#include "thread_state.h"

namespace mqsa {

// The arguments and state of one call to a hot callback. Missing arguments
// read as undefined.
template <size_t Count>
struct HotCall {
  HotCall(napi_env raw_env, napi_callback_info info) : env(raw_env) {
    size_t count = Count;
    void* data = nullptr;
    napi_get_cb_info(raw_env, info, &count, args, nullptr, &data);
    state = static_cast<std::shared_ptr<ThreadState>*>(data);
  }

  Napi::Env env;
  napi_value args[Count];
  // The environment's state, as registered by export_hot_function.
  std::shared_ptr<ThreadState>* state = nullptr;
};

// Adds `callback` to `exports` as `name`, with the environment's state as
// its data. The state lives as long as the function can be called.
inline void export_hot_function(Napi::Env env, Napi::Object exports, const char* name, napi_callback callback) {
  napi_value function = nullptr;
  NAPI_THROW_IF_FAILED_VOID(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, &thread_state(env), &function));
  exports.Set(name, Napi::Value(env, function));
}

}  // namespace mqsa
