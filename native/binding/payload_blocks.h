// Payload blocks: bytes copied into a block of a session allocator and kept
// native, named by a number instead of a Buffer. A stored message that
// JavaScript only reads when it is sent costs no external Buffer this way.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "allocator.h"

namespace mqsa {

// The blocks of one thread. A handle is the slot index plus one, plus the
// slot's generation times 2^32, so a stale handle of a freed and reused slot
// never reaches the new block. Every access happens on the owning
// JavaScript thread.
class PayloadBlocks {
 public:
  struct Block {
    void* data = nullptr;
    size_t size = 0;    // payload bytes
    size_t usable = 0;  // bytes charged
    std::shared_ptr<MQTTAllocator> allocator;
  };

  // Stores a block and returns its handle.
  double add(Block block);
  // Returns the live block behind `handle`, or null.
  Block* find(double handle);
  // Frees the block behind `handle`; false when it is not live. `counters`
  // are the calling thread's.
  bool free(double handle, ThreadCounters& counters);
  // Frees every block; runs when the thread's environment ends.
  void free_all(ThreadCounters& counters);

 private:
  struct Slot {
    Block block;
    uint32_t generation = 0;
    bool used = false;
  };
  // Returns the used slot that `handle` names, or null.
  Slot* live_slot(double handle);

  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
};

// Outcome of copy_payload_in.
enum class CopyResult { kStored, kRefused, kFailed };

// Copies the Uint8Array `payload` into a new block of `allocator`, setting
// `data`, `size` (payload bytes) and `usable` (bytes charged). A refusal by
// a limit is reported like any refused allocation and gives kRefused. Any
// other failure throws and gives kFailed.
CopyResult copy_payload_in(Napi::Env env, napi_value payload, const std::shared_ptr<MQTTAllocator>& allocator,
                           ThreadCounters& counters, void*& data, size_t& size, size_t& usable);

// Adds payloadStore, payloadSize, payloadRead, payloadFree and payloadTake
// to `exports`.
void export_payload_functions(Napi::Env env, Napi::Object exports);

}  // namespace mqsa
