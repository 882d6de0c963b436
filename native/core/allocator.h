// MQTTAllocator: one node of the allocator hierarchy. Each node has a byte
// limit (0 = unlimited) and counts the usable bytes of every live block
// allocated from it or from any node below it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tags.h"
#include "thread_counters.h"

namespace mqsa {

// Details of a rejected allocation: the first node on the path from the
// allocator up to the root whose limit the allocation would have passed.
struct LimitRefusal {
  std::string allocator_id;
  mq_memory_tag tag = MEM_TAG_ROOT;
  size_t requested = 0;  // usable bytes the allocation needed
  size_t usage = 0;      // the node's usage when it refused
  size_t limit = 0;
};

struct AllocatorStats {
  size_t usage = 0;       // usable bytes of live blocks, this node and below
  size_t self_usage = 0;  // usable bytes of live blocks from this node itself
  size_t peak = 0;        // highest `usage` seen
  size_t limit = 0;       // 0 = unlimited
  uint64_t live_blocks = 0;          // blocks from this node, not yet freed
  uint64_t total_allocations = 0;    // only grows
  uint64_t total_requested_bytes = 0;  // only grows: sizes callers asked for
  uint64_t total_refusals = 0;       // only grows: refused by this node's limit
};

// Returns a number that identifies the calling OS thread for the life of the
// process. It is never 0.
uint64_t calling_thread_id();

class MQTTAllocator : public std::enable_shared_from_this<MQTTAllocator> {
 public:
  // Creates a node with no parent. `id` must not be empty.
  static int create_root(const std::string& id, int32_t tag, size_t limit,
                         std::shared_ptr<MQTTAllocator>& out);

  MQTTAllocator(const MQTTAllocator&) = delete;
  MQTTAllocator& operator=(const MQTTAllocator&) = delete;

  // Creates a child named `id`, unique among this node's children. Returns
  // MQ_ERR_ALLOCATOR_CREATE when the id is taken, MQ_ERR_ALLOCATOR_INVALID_TAG
  // for an unknown tag and MQ_ERR_ALLOCATOR_HIERARCHY when this node has
  // been removed from its hierarchy.
  int create_child(const std::string& id, int32_t tag, size_t limit,
                   std::shared_ptr<MQTTAllocator>& out);

  // Like create_child, for a child confined to the thread `owner` (a
  // calling_thread_id()). Blocks of a confined node and of everything below
  // it are allocated and freed on that thread only: allocate() rejects
  // other threads with MQ_ERR_ALLOCATOR_HIERARCHY. In exchange its counters
  // are updated without locked instructions. The children of a confined
  // node are confined to the same thread.
  int create_confined_child(const std::string& id, int32_t tag, size_t limit, uint64_t owner,
                            std::shared_ptr<MQTTAllocator>& out);

  // Finds the child named exactly `id`.
  int find_child(const std::string& id, std::shared_ptr<MQTTAllocator>& out) const;

  // Removes the child named `id` and detaches its subtree. Live blocks of
  // the subtree stay valid and stay charged to every node above until they
  // are freed. A detached node rejects new allocations and new children.
  // Returns MQ_ERR_ALLOCATOR_HIERARCHY, removing nothing, for a component.
  int remove_child(const std::string& id);

  // Marks this node as a part of its parent (a session's queue or worker
  // allocator), which remove_child() then refuses to remove alone. Removing
  // the parent removes it.
  void mark_component() { component_.store(true, std::memory_order_relaxed); }
  bool is_component() const { return component_.load(std::memory_order_relaxed); }

  // Snapshot of the current children.
  std::vector<std::shared_ptr<MQTTAllocator>> children() const;

  // Allocates `size` bytes and charges the usable size to this node and
  // every ancestor. Either all of them are charged or none: when any would
  // pass its limit, nothing stays charged or allocated, `refusal` (when not
  // null) describes the node that refused, and the result is
  // MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED. Safe to call from any thread, except
  // that a confined node allocates only on its own thread.
  int allocate(size_t size, void*& out, size_t& usable, LimitRefusal* refusal);

  // The same, for a caller that already has the calling thread's counters
  // (this_thread_counters()), which saves a thread-local lookup.
  int allocate(size_t size, void*& out, size_t& usable, LimitRefusal* refusal,
               ThreadCounters& counters);

  // Frees a block returned by allocate() on this node and uncharges it. The
  // size comes from the backend. The caller guarantees that `ptr` came from
  // this node and is freed once, on the node's thread if it is confined.
  int deallocate(void* ptr);

  // Like deallocate(ptr), for a caller that kept the usable size that
  // allocate() reported, which saves asking the backend again.
  int deallocate(void* ptr, size_t usable);

  // The same, with the calling thread's counters.
  int deallocate(void* ptr, size_t usable, ThreadCounters& counters);

  // Returns true when `usable` more bytes fit in the limit of this node and
  // of every ancestor, once `freed` bytes charged to this node are released.
  // A snapshot: other threads may charge the shared nodes meanwhile.
  bool has_room(size_t usable, size_t freed) const;

  // Sets the limit. Lowering it below the current usage frees nothing, but
  // new allocations fail until usage drops below it.
  void set_limit(size_t limit) { limit_.store(limit, std::memory_order_relaxed); }

  const std::string& id() const { return id_; }
  mq_memory_tag tag() const { return tag_; }
  size_t limit() const { return limit_.load(std::memory_order_relaxed); }
  size_t usage() const { return usage_.load(std::memory_order_relaxed); }
  size_t peak() const { return peak_.load(std::memory_order_relaxed); }
  bool detached() const { return detached_.load(std::memory_order_acquire); }
  // The thread a confined node belongs to, or 0 for a node of any thread.
  uint64_t owner() const { return owner_; }
  const std::shared_ptr<MQTTAllocator>& parent() const { return parent_; }
  AllocatorStats stats() const;

 private:
  MQTTAllocator(std::string id, mq_memory_tag tag, size_t limit, uint64_t owner,
                std::shared_ptr<MQTTAllocator> parent);

  // Adds `bytes` to this node and every ancestor, or to none of them.
  bool charge(size_t bytes, LimitRefusal* refusal);
  void uncharge(size_t bytes);
  // Raises the peak of this node and every ancestor to its usage.
  void raise_peaks();
  // Counts a refusal by this node's limit and fills `refusal`.
  void refused(size_t bytes, size_t usage, size_t limit, LimitRefusal* refusal);
  void detach_subtree();

  const std::string id_;
  const mq_memory_tag tag_;
  // Only this thread writes the usage and statistics of a confined node.
  // Other threads still read them, so they stay atomics, but plain loads and
  // stores replace the locked read-modify-writes.
  const uint64_t owner_;
  // Each node owns its parent, so the chain up to the root stays valid for as
  // long as a live block of the node needs uncharging.
  const std::shared_ptr<MQTTAllocator> parent_;

  std::atomic<size_t> limit_;
  std::atomic<size_t> usage_{0};
  std::atomic<size_t> self_usage_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<uint64_t> live_blocks_{0};
  std::atomic<uint64_t> total_allocations_{0};
  std::atomic<uint64_t> total_requested_bytes_{0};
  std::atomic<uint64_t> total_refusals_{0};
  std::atomic<bool> detached_{false};
  std::atomic<bool> component_{false};

  mutable std::mutex children_mutex_;
  std::map<std::string, std::shared_ptr<MQTTAllocator>> children_;
};

}  // namespace mqsa
