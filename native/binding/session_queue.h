// Native storage of SessionQueue payloads. A queued payload that JavaScript
// does not touch while it waits needs no Buffer. It is copied into a block
// of the client's queue allocator on push and copied out into an ordinary
// Buffer on shift, so no message costs an external Buffer.
#pragma once

#include <napi.h>

#include <deque>
#include <memory>

#include "allocator.h"

namespace mqsa {

struct ThreadState;

struct QueuedBlock {
  void* data = nullptr;
  size_t size = 0;     // payload bytes
  size_t usable = 0;   // bytes charged
  // The allocator the block came from. A queue moves to a new allocator
  // when its session is registered again, and older blocks stay charged
  // where they were allocated.
  std::shared_ptr<MQTTAllocator> allocator;
};

// One queue's blocks. Owned by the External that JavaScript holds; the
// thread's state lists it so that thread teardown frees its blocks. Every
// access happens on the owning JavaScript thread.
struct NativeQueue {
  std::shared_ptr<ThreadState> thread;
  std::deque<QueuedBlock> blocks;
  size_t charged = 0;  // usable bytes of all blocks

  // Frees every block.
  void clear();
};

// Adds the queue functions to `exports`.
void export_queue_functions(Napi::Env env, Napi::Object exports);

}  // namespace mqsa
