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

// The blocks of one thread. A handle packs three numbers into an integer
// below 2^53, so that a JavaScript number represents it exactly:
// - bits 0 to 25: the slot index plus one (never 0, which means refused);
// - bits 26 to 43: the slot's generation, so that a stale handle of a freed
//   and reused slot never reaches the new block (until 2^18 reuses);
// - bits 44 to 52: the thread's tag, so that a handle passed to another
//   thread names none of that thread's blocks (tags repeat only after 512
//   threads have stored payloads).
// Every access happens on the owning JavaScript thread.
class PayloadBlocks {
 public:
  // Bits of a handle that give the slot index plus one.
  static constexpr unsigned kIndexBits = 26;
  // Maximum number of live blocks of one thread: 2^26 - 1.
  static constexpr uint64_t kMaxSlots = (uint64_t{1} << kIndexBits) - 1;

  PayloadBlocks();

  struct Block {
    void* data = nullptr;
    size_t size = 0;    // payload bytes
    size_t usable = 0;  // bytes charged
    std::shared_ptr<MQTTAllocator> allocator;
  };

  // Stores a block and returns its handle, or 0 when the thread holds
  // kMaxSlots blocks already (the block is then left to the caller).
  double add(Block& block);
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
  uint64_t tag_;
};

// Outcome of copy_payload_in.
enum class CopyResult { kStored, kRefused, kFailed };

// Copies the Uint8Array `payload` into a new block of `allocator`, setting
// `data`, `size` (payload bytes) and `usable` (bytes charged). A refusal by
// a limit is reported like any refused allocation and gives kRefused. Any
// other failure throws and gives kFailed.
CopyResult copy_payload_in(Napi::Env env, napi_value payload, const std::shared_ptr<MQTTAllocator>& allocator,
                           ThreadCounters& counters, void*& data, size_t& size, size_t& usable);

// Adds payloadStore, payloadSize, payloadRead, payloadFree, payloadTake and
// the payloadCharge array to `exports`.
void export_payload_functions(Napi::Env env, Napi::Object exports);

}  // namespace mqsa
