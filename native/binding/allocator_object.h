// The JavaScript handle of one MQTTAllocator.
#pragma once

#include <napi.h>

#include <memory>

#include "allocator.h"

namespace mqsa {

class AllocatorObject : public Napi::ObjectWrap<AllocatorObject> {
 public:
  // Defines the class and keeps its constructor in the thread's state.
  static Napi::Function define(Napi::Env env);

  // Returns a new handle for `allocator`.
  static Napi::Value wrap(Napi::Env env, const std::shared_ptr<MQTTAllocator>& allocator);

  // Returns the allocator behind `value`, or null when it is not a handle.
  static std::shared_ptr<MQTTAllocator> unwrap(Napi::Value value);

  explicit AllocatorObject(const Napi::CallbackInfo& info);

  // Returns an External holding the allocator, for allocate_from().
  static Napi::Value token(Napi::Env env, const std::shared_ptr<MQTTAllocator>& allocator);

 private:
  Napi::Value id(const Napi::CallbackInfo& info);
  Napi::Value tag(const Napi::CallbackInfo& info);
  Napi::Value limit(const Napi::CallbackInfo& info);
  void set_limit(const Napi::CallbackInfo& info, const Napi::Value& value);
  Napi::Value usage(const Napi::CallbackInfo& info);
  Napi::Value peak(const Napi::CallbackInfo& info);
  Napi::Value detached(const Napi::CallbackInfo& info);
  Napi::Value stats(const Napi::CallbackInfo& info);
  Napi::Value allocate(const Napi::CallbackInfo& info);
  Napi::Value create_child(const Napi::CallbackInfo& info);
  Napi::Value find_child(const Napi::CallbackInfo& info);
  Napi::Value remove_child(const Napi::CallbackInfo& info);
  Napi::Value children(const Napi::CallbackInfo& info);

  std::shared_ptr<MQTTAllocator> allocator_;
};

// allocateFrom(token, size, throwOnLimit): the hot-path form of
// allocate(). A token is an External, so reaching the allocator costs no
// property lookup, unlike unwrapping a handle object. A hot callback (see
// hot_call.h).
napi_value allocate_from(napi_env env, napi_callback_info info);

// roomFor(token, size, freed): true when a block for `size` bytes, charged
// its usable size, fits in every limit from the token's allocator up to the
// root once `freed` bytes charged to that allocator are released. Callers
// check with it before they drop anything to make room. A hot callback (see
// hot_call.h).
napi_value room_for(napi_env env, napi_callback_info info);

// allocatorToken(handle): the token of an allocator handle.
Napi::Value allocator_token(const Napi::CallbackInfo& info);

// Returns the allocator behind a token from allocatorToken(), or null with
// an exception pending when `value` is not a token. One Node-API call, for
// the hot paths.
const std::shared_ptr<MQTTAllocator>* read_token(Napi::Env env, napi_value value);

// Reads a byte count validated by the TypeScript layer: a non-negative safe
// integer. Returns false (with an exception pending) otherwise.
bool read_size(Napi::Env env, Napi::Value value, const char* what, size_t& out);

// Reads a string argument as UTF-8. Returns false (with an exception
// pending) when it is not a string.
bool read_string(Napi::Env env, Napi::Value value, const char* what, std::string& out);

}  // namespace mqsa
