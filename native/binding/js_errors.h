// Conversion of core status codes into JavaScript errors. Every error thrown
// by the addon goes through here, so JavaScript always receives the
// package's MqttAllocatorError with its context fields.
#pragma once

#include <napi.h>

#include <string>

#include "allocator.h"

namespace mqsa {

struct ErrorContext {
  std::string client_id;  // empty when there is no client
  bool has_refusal = false;
  LimitRefusal refusal;
  size_t requested = 0;  // bytes the caller asked for
};

// Throws the error for `code` with `detail` as its explanation. Returns an
// empty value for the caller to return.
Napi::Value throw_code(Napi::Env env, int code, const std::string& detail,
                       const ErrorContext* context = nullptr);

// Reports a refused allocation to JavaScript (event, counters, log) through
// the hook the TypeScript layer installed.
void report_limit_exceeded(Napi::Env env, const ErrorContext& context);

// Returns the id of the nearest session allocator at or above `allocator`,
// or an empty string.
std::string owning_client_id(const MQTTAllocator* allocator);

// Completes `context` for a request of `size` bytes that a limit on the
// path of `allocator` rejected, then reports it like report_limit_exceeded.
void report_refusal(Napi::Env env, ErrorContext& context, const MQTTAllocator& allocator, size_t size);

// Throws the error for an allocation of `size` bytes from `allocator` that
// failed with `code`, other than a refusal by a limit. Returns an empty
// value for the caller to return.
Napi::Value throw_allocation_failure(Napi::Env env, int code, const MQTTAllocator& allocator, size_t size);

}  // namespace mqsa
