// Per-thread (per Node environment) state of the addon, kept as the
// environment's instance data.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "allocator.h"
#include "payload_blocks.h"

namespace mqsa {

struct ThreadState;
struct NativeQueue;

// One allocation handed to JavaScript as an external Buffer. The record has
// two owners and lives until both let go. The first is the thread's
// live-buffer table, until release(), GC or teardown frees the block. The
// second is the Buffer's finalizer, which Node runs on a later event-loop
// turn, possibly after the block was released. Every access happens on the
// owning JavaScript thread.
struct BufferRecord {
  std::shared_ptr<MQTTAllocator> allocator;
  std::shared_ptr<ThreadState> thread;
  void* data = nullptr;
  size_t usable = 0;
  bool released = false;
  bool cache = false;  // allocated from the message cache
  int owners = 2;
};

struct ThreadState {
  uint64_t thread_key = 0;
  std::shared_ptr<MQTTAllocator> thread_allocator;
  bool initialized = false;
  bool torn_down = false;

  // Blocks of this thread not yet released, by data pointer.
  std::unordered_map<void*, BufferRecord*> live;
  size_t cache_bytes = 0;  // usable bytes of live message-cache blocks
  // Session queues of this thread whose objects are not collected yet.
  std::unordered_set<NativeQueue*> queues;
  // Payload blocks of this thread, by handle.
  PayloadBlocks payloads;

  Napi::FunctionReference allocator_constructor;
  Napi::FunctionReference create_error;
  Napi::FunctionReference on_limit_exceeded;
};

// Returns the calling environment's state. Never null after module init.
std::shared_ptr<ThreadState>& thread_state(Napi::Env env);

// Frees the block of `record` if it is still live and drops the table's
// ownership. Returns the core's status code.
int free_record(BufferRecord* record);

// Drops one owner of `record`, deleting it with the last.
void unref_record(BufferRecord* record);

}  // namespace mqsa
