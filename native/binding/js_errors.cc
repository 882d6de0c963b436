#include "js_errors.h"

#include "errors.h"
#include "thread_state.h"

namespace mqsa {

std::string owning_client_id(const MQTTAllocator* allocator) {
  for (const MQTTAllocator* node = allocator; node != nullptr; node = node->parent().get()) {
    if (node->tag() == MEM_TAG_SESSION) return node->id();
  }
  return std::string();
}

static Napi::Object context_object(Napi::Env env, const ErrorContext* context) {
  Napi::Object object = Napi::Object::New(env);
  if (context == nullptr) return object;

  if (!context->client_id.empty()) object.Set("clientId", context->client_id);
  object.Set("requested", static_cast<double>(context->requested));
  if (context->has_refusal) {
    object.Set("allocatorId", context->refusal.allocator_id);
    object.Set("tag", static_cast<double>(context->refusal.tag));
    object.Set("charge", static_cast<double>(context->refusal.requested));
    object.Set("usage", static_cast<double>(context->refusal.usage));
    object.Set("limit", static_cast<double>(context->refusal.limit));
  }
  return object;
}

Napi::Value throw_code(Napi::Env env, int code, const std::string& detail,
                       const ErrorContext* context) {
  std::shared_ptr<ThreadState>& state = thread_state(env);
  Napi::Object fields = context_object(env, context);
  if (state && !state->create_error.IsEmpty()) {
    Napi::Value error = state->create_error.Call(
        {Napi::Number::New(env, code), Napi::String::New(env, detail), fields});
    if (!env.IsExceptionPending() && error.IsObject()) {
      Napi::Error(env, error).ThrowAsJavaScriptException();
    }
    return Napi::Value();
  }

  // Before the TypeScript layer installed its hooks: a plain Error with the
  // same fields.
  const char* name = mqtt_error_name(code);
  Napi::Error error = Napi::Error::New(env, std::string(mqtt_error_string(code)) + ": " + detail);
  error.Set("code", name != nullptr ? name : "MQ_ERR_ALLOCATOR");
  error.Set("errno", static_cast<double>(code));
  error.ThrowAsJavaScriptException();
  return Napi::Value();
}

void report_limit_exceeded(Napi::Env env, const ErrorContext& context) {
  std::shared_ptr<ThreadState>& state = thread_state(env);
  if (!state || state->on_limit_exceeded.IsEmpty()) return;

  state->on_limit_exceeded.Call({context_object(env, &context)});
}

void report_refusal(Napi::Env env, ErrorContext& context, const MQTTAllocator& allocator, size_t size) {
  context.has_refusal = true;
  context.requested = size;
  context.client_id = owning_client_id(&allocator);
  report_limit_exceeded(env, context);
}

Napi::Value throw_allocation_failure(Napi::Env env, int code, const MQTTAllocator& allocator, size_t size) {
  if (code == MQ_ERR_ALLOCATOR_NOT_FOUND) {
    return throw_code(env, code, "allocator '" + allocator.id() +
                                     "' was removed from the hierarchy and cannot allocate");
  }
  return throw_code(env, code, "the memory backend could not allocate " + std::to_string(size) + " bytes");
}

}  // namespace mqsa
