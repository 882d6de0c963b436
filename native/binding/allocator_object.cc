#include "allocator_object.h"

#include <cmath>

#include "backend.h"
#include "buffers.h"
#include "errors.h"
#include "hot_call.h"
#include "js_errors.h"
#include "thread_state.h"

namespace mqsa {

// 2^53 - 1: larger numbers are not exact in JavaScript.
constexpr double kMaxSafeInteger = 9007199254740991.0;

bool read_size(Napi::Env env, Napi::Value value, const char* what, size_t& out) {
  // napi_get_value_double rejects anything but a number, without coercion.
  double number = 0;
  if (napi_get_value_double(env, value, &number) == napi_ok && number >= 0 &&
      number <= kMaxSafeInteger && std::floor(number) == number) {
    out = static_cast<size_t>(number);
    return true;
  }
  throw_code(env, MQ_ERR_INVALID_ARGS,
             std::string(what) + " must be a non-negative safe integer number of bytes");
  return false;
}

const std::shared_ptr<MQTTAllocator>* read_token(Napi::Env env, napi_value value) {
  void* token = nullptr;
  if (napi_get_value_external(env, value, &token) != napi_ok || token == nullptr) {
    throw_code(env, MQ_ERR_INVALID_ARGS, "expected an allocator token");
    return nullptr;
  }
  return static_cast<std::shared_ptr<MQTTAllocator>*>(token);
}

bool read_string(Napi::Env env, Napi::Value value, const char* what, std::string& out) {
  if (value.IsString()) {
    out = value.As<Napi::String>().Utf8Value();
    return true;
  }
  throw_code(env, MQ_ERR_INVALID_ARGS, std::string(what) + " must be a string");
  return false;
}

Napi::Function AllocatorObject::define(Napi::Env env) {
  Napi::Function constructor = DefineClass(
      env, "NativeAllocator",
      {
          InstanceAccessor<&AllocatorObject::id>("id"),
          InstanceAccessor<&AllocatorObject::tag>("tag"),
          InstanceAccessor<&AllocatorObject::limit, &AllocatorObject::set_limit>("limit"),
          InstanceAccessor<&AllocatorObject::usage>("usage"),
          InstanceAccessor<&AllocatorObject::peak>("peak"),
          InstanceAccessor<&AllocatorObject::detached>("detached"),
          InstanceMethod<&AllocatorObject::stats>("stats"),
          InstanceMethod<&AllocatorObject::allocate>("allocate"),
          InstanceMethod<&AllocatorObject::create_child>("createChild"),
          InstanceMethod<&AllocatorObject::find_child>("findChild"),
          InstanceMethod<&AllocatorObject::remove_child>("removeChild"),
          InstanceMethod<&AllocatorObject::children>("children"),
      });
  thread_state(env)->allocator_constructor = Napi::Persistent(constructor);
  return constructor;
}

Napi::Value AllocatorObject::wrap(Napi::Env env, const std::shared_ptr<MQTTAllocator>& allocator) {
  // The constructor takes the allocator through an External, which script
  // code cannot make: handles come only from the addon.
  auto* holder = new std::shared_ptr<MQTTAllocator>(allocator);
  Napi::External<std::shared_ptr<MQTTAllocator>> external =
      Napi::External<std::shared_ptr<MQTTAllocator>>::New(
          env, holder, [](Napi::Env, std::shared_ptr<MQTTAllocator>* data) { delete data; });
  return thread_state(env)->allocator_constructor.New({external});
}

std::shared_ptr<MQTTAllocator> AllocatorObject::unwrap(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  Napi::Object object = value.As<Napi::Object>();
  if (!object.InstanceOf(thread_state(value.Env())->allocator_constructor.Value())) {
    return nullptr;
  }
  return Unwrap(object)->allocator_;
}

Napi::Value AllocatorObject::token(Napi::Env env, const std::shared_ptr<MQTTAllocator>& allocator) {
  auto* holder = new std::shared_ptr<MQTTAllocator>(allocator);
  return Napi::External<std::shared_ptr<MQTTAllocator>>::New(
      env, holder, [](Napi::Env, std::shared_ptr<MQTTAllocator>* data) { delete data; });
}

Napi::Value allocator_token(const Napi::CallbackInfo& info) {
  std::shared_ptr<MQTTAllocator> allocator = AllocatorObject::unwrap(info[0]);
  if (!allocator) {
    return throw_code(info.Env(), MQ_ERR_INVALID_ARGS, "expected an allocator handle");
  }
  return AllocatorObject::token(info.Env(), allocator);
}

// The hot path of every session buffer: each argument is read with one
// Node-API call that also checks its type.
napi_value allocate_from(napi_env raw_env, napi_callback_info info) {
  HotCall<3> call(raw_env, info);
  Napi::Env env = call.env;

  const std::shared_ptr<MQTTAllocator>* token = read_token(env, call.args[0]);
  if (token == nullptr) return nullptr;
  const std::shared_ptr<MQTTAllocator>& allocator = *token;
  size_t size = 0;
  if (!read_size(env, Napi::Value(env, call.args[1]), "size", size)) return nullptr;
  // Read without coercion, as in AllocatorObject::allocate: anything but
  // false throws on a refusal.
  bool throw_on_limit = true;
  if (napi_get_value_bool(env, call.args[2], &throw_on_limit) != napi_ok) throw_on_limit = true;
  bool cache = allocator->tag() == MEM_TAG_MESSAGE_CACHE;
  return allocate_buffer(env, *call.state, allocator, size, throw_on_limit, cache);
}

napi_value room_for(napi_env raw_env, napi_callback_info info) {
  HotCall<3> call(raw_env, info);
  Napi::Env env = call.env;

  const std::shared_ptr<MQTTAllocator>* token = read_token(env, call.args[0]);
  if (token == nullptr) return nullptr;
  size_t size = 0;
  size_t freed = 0;
  if (!read_size(env, Napi::Value(env, call.args[1]), "size", size)) return nullptr;
  if (!read_size(env, Napi::Value(env, call.args[2]), "freed", freed)) return nullptr;

  size_t usable = Backend::instance().usable_size_for(size, *(*call.state)->counters);
  bool room = usable != 0 && (*token)->has_room(usable, freed);
  return Napi::Boolean::New(env, room);
}

AllocatorObject::AllocatorObject(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<AllocatorObject>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw_code(info.Env(), MQ_ERR_INVALID_ARGS,
               "allocator handles are created by the package, not with new");
    return;
  }
  allocator_ = *info[0].As<Napi::External<std::shared_ptr<MQTTAllocator>>>().Data();
}

Napi::Value AllocatorObject::id(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), allocator_->id());
}

Napi::Value AllocatorObject::tag(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), allocator_->tag());
}

Napi::Value AllocatorObject::limit(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(allocator_->limit()));
}

void AllocatorObject::set_limit(const Napi::CallbackInfo& info, const Napi::Value& value) {
  size_t limit = 0;
  if (read_size(info.Env(), value, "limit", limit)) allocator_->set_limit(limit);
}

Napi::Value AllocatorObject::usage(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(allocator_->usage()));
}

Napi::Value AllocatorObject::peak(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(allocator_->peak()));
}

Napi::Value AllocatorObject::detached(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), allocator_->detached());
}

Napi::Value AllocatorObject::stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AllocatorStats stats = allocator_->stats();
  Napi::Object result = Napi::Object::New(env);
  result.Set("usage", static_cast<double>(stats.usage));
  result.Set("selfUsage", static_cast<double>(stats.self_usage));
  result.Set("peak", static_cast<double>(stats.peak));
  result.Set("limit", static_cast<double>(stats.limit));
  result.Set("liveBlocks", static_cast<double>(stats.live_blocks));
  result.Set("totalAllocations", static_cast<double>(stats.total_allocations));
  result.Set("totalRequestedBytes", static_cast<double>(stats.total_requested_bytes));
  result.Set("totalRefusals", static_cast<double>(stats.total_refusals));
  return result;
}

// allocate(size, throwOnLimit = true)
Napi::Value AllocatorObject::allocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t size = 0;
  if (!read_size(env, info[0], "size", size)) return Napi::Value();
  // Read without coercion: coercing may call into JavaScript, which fails
  // while the thread is being terminated, and node-addon-api then aborts.
  bool throw_on_limit = !info[1].IsBoolean() || info[1].As<Napi::Boolean>().Value();
  bool cache = allocator_->tag() == MEM_TAG_MESSAGE_CACHE;
  return allocate_buffer(env, allocator_, size, throw_on_limit, cache);
}

// createChild(id, tag, limit)
Napi::Value AllocatorObject::create_child(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string id;
  size_t limit = 0;
  if (!read_string(env, info[0], "id", id)) return Napi::Value();
  if (!info[1].IsNumber()) return throw_code(env, MQ_ERR_ALLOCATOR_INVALID_TAG, "tag must be a number");
  int32_t tag = info[1].As<Napi::Number>().Int32Value();
  if (!read_size(env, info[2], "limit", limit)) return Napi::Value();

  std::shared_ptr<MQTTAllocator> child;
  int rc = allocator_->create_child(id, tag, limit, child);
  if (rc != MQ_SUCCESS) {
    return throw_code(env, rc, "could not create child '" + id + "' of allocator '" +
                                   allocator_->id() + "'");
  }
  return wrap(env, child);
}

Napi::Value AllocatorObject::find_child(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string id;
  if (!read_string(env, info[0], "id", id)) return Napi::Value();

  std::shared_ptr<MQTTAllocator> child;
  if (allocator_->find_child(id, child) != MQ_SUCCESS) return env.Undefined();
  return wrap(env, child);
}

Napi::Value AllocatorObject::remove_child(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string id;
  if (!read_string(env, info[0], "id", id)) return Napi::Value();

  int rc = allocator_->remove_child(id);
  if (rc == MQ_ERR_ALLOCATOR_HIERARCHY) {
    return throw_code(env, rc,
                      "child '" + id + "' of allocator '" + allocator_->id() +
                          "' is a part of its session and is removed only with it, by cleanupSessionAllocators");
  }
  if (rc != MQ_SUCCESS) {
    return throw_code(env, rc, "allocator '" + allocator_->id() + "' has no child '" + id + "'");
  }
  return env.Undefined();
}

Napi::Value AllocatorObject::children(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::shared_ptr<MQTTAllocator>> children = allocator_->children();
  Napi::Array result = Napi::Array::New(env, children.size());
  for (size_t i = 0; i < children.size(); i++) {
    result.Set(static_cast<uint32_t>(i), wrap(env, children[i]));
  }
  return result;
}

}  // namespace mqsa
