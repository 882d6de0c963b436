// Session buffers: blocks of an allocator handed to JavaScript as external
// Buffers, freed by release() or, failing that, by the Buffer's finalizer.
#pragma once

#include <napi.h>

#include "allocator.h"

namespace mqsa {

struct ThreadState;

// Allocates `size` bytes from `allocator` and wraps them in a Buffer. On a
// refused allocation, reports it and then throws, or returns undefined when
// `throw_on_limit` is false. Other failures always throw.
Napi::Value allocate_buffer(Napi::Env env, const std::shared_ptr<MQTTAllocator>& allocator,
                            size_t size, bool throw_on_limit, bool cache);

// The same, with the calling environment's state given.
Napi::Value allocate_buffer(Napi::Env env, std::shared_ptr<ThreadState>& state,
                            const std::shared_ptr<MQTTAllocator>& allocator, size_t size,
                            bool throw_on_limit, bool cache);

// release(buffer): frees the buffer's block now and detaches its
// ArrayBuffer, so every view on it becomes empty. Throws, freeing nothing,
// for a buffer that was released already or that this thread did not
// allocate. A hot callback (see hot_call.h).
napi_value release_buffer(napi_env env, napi_callback_info info);

// releaseFrom(token, buffer): release(buffer) for a buffer of the token's
// allocator or of one below it. Throws, freeing nothing, for any other
// buffer. A hot callback (see hot_call.h).
napi_value release_from(napi_env env, napi_callback_info info);

// isSessionBuffer(buffer): true when the buffer is a live allocation of this
// thread.
Napi::Value is_session_buffer(const Napi::CallbackInfo& info);

// externalBufferFloor(size, keep): creates one external Buffer with no
// accounting and detaches it, or returns it alive when `keep` is true.
// Exported for the benchmarks only, as the floor that Node itself costs per
// session buffer.
Napi::Value external_buffer_floor(const Napi::CallbackInfo& info);

// Frees every live block of the thread; runs when its environment ends.
void release_all_buffers(ThreadState& state);

}  // namespace mqsa
