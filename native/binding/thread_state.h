// Per-thread (per Node environment) state of the addon, kept as the
// environment's instance data.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "allocator.h"
#include "live_table.h"
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
  size_t length = 0;  // bytes of the Buffer handed out (0 for an empty one)
  bool released = false;
  bool cache = false;  // allocated from the message cache
  int owners = 2;
};

struct ThreadState {
  uint64_t thread_key = 0;
  // this_thread_counters() of the environment's thread, kept because a
  // thread-local lookup from an addon costs a call per use.
  ThreadCounters* counters = nullptr;
  std::shared_ptr<MQTTAllocator> thread_allocator;
  bool initialized = false;
  bool torn_down = false;

  // Blocks of this thread not yet released, by data pointer.
  LiveTable live;
  // Records whose owners have both let go, kept for the next allocation so
  // that a buffer costs no heap allocation of its own. Each keeps a share of
  // this state until teardown deletes it, and the allocator it last served
  // until it serves another or that allocator is removed.
  std::vector<BufferRecord*> spare_records;
  size_t cache_bytes = 0;  // usable bytes of live message-cache blocks
  // Session queues of this thread whose objects are not collected yet.
  std::unordered_set<NativeQueue*> queues;
  // Payload blocks of this thread, by handle.
  PayloadBlocks payloads;
  // Bytes charged for the payload that payloadStore stored last. JavaScript
  // reads it through the payloadCharge array, which costs no call.
  double last_payload_charge = 0;

  Napi::FunctionReference allocator_constructor;
  Napi::FunctionReference create_error;
  Napi::FunctionReference on_limit_exceeded;
};

// Returns the calling environment's state. Never null after module init.
std::shared_ptr<ThreadState>& thread_state(Napi::Env env);

// Frees the block of `record` if it is still live and drops the table's
// ownership. Returns the core's status code.
int free_record(BufferRecord* record);

// Drops one owner of `record`. With the last, the record becomes a spare of
// its thread, or is deleted once the thread is torn down.
void unref_record(BufferRecord* record);

// Makes the thread's spare records let go of allocators that were removed
// from the hierarchy, so that spares never keep one alive for long.
void release_removed_allocators(ThreadState& state);

// Deletes the thread's spare records. Runs when its environment ends.
void delete_spare_records(ThreadState& state);

}  // namespace mqsa
