#include "allocator.h"

#include "backend.h"
#include "errors.h"
#include "thread_counters.h"

namespace mqsa {

uint64_t calling_thread_id() { return this_thread_counters().thread_id(); }

namespace {

// Counter updates. A confined node's counters have a single writer, its
// thread, so a plain load and store is exact there and costs no locked
// instruction.
template <typename T>
void add(std::atomic<T>& counter, T delta, bool confined) {
  if (confined) {
    counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  } else {
    counter.fetch_add(delta, std::memory_order_relaxed);
  }
}

template <typename T>
void sub(std::atomic<T>& counter, T delta, bool confined) {
  if (confined) {
    counter.store(counter.load(std::memory_order_relaxed) - delta, std::memory_order_relaxed);
  } else {
    counter.fetch_sub(delta, std::memory_order_relaxed);
  }
}

}  // namespace

MQTTAllocator::MQTTAllocator(std::string id, mq_memory_tag tag, size_t limit, uint64_t owner,
                             std::shared_ptr<MQTTAllocator> parent)
    : id_(std::move(id)), tag_(tag), owner_(owner), parent_(std::move(parent)), limit_(limit) {}

int MQTTAllocator::create_root(const std::string& id, int32_t tag, size_t limit,
                               std::shared_ptr<MQTTAllocator>& out) {
  if (id.empty()) return MQ_ERR_INVALID_ARGS;
  if (!is_valid_tag(tag)) return MQ_ERR_ALLOCATOR_INVALID_TAG;

  out.reset(new MQTTAllocator(id, static_cast<mq_memory_tag>(tag), limit, 0, nullptr));
  return MQ_SUCCESS;
}

int MQTTAllocator::create_child(const std::string& id, int32_t tag, size_t limit,
                                std::shared_ptr<MQTTAllocator>& out) {
  return create_confined_child(id, tag, limit, owner_, out);
}

int MQTTAllocator::create_confined_child(const std::string& id, int32_t tag, size_t limit,
                                         uint64_t owner, std::shared_ptr<MQTTAllocator>& out) {
  if (id.empty()) return MQ_ERR_INVALID_ARGS;
  // Below a confined node every node belongs to the same thread, which keeps
  // the confined part of any path contiguous and single-threaded.
  if (owner_ != 0) owner = owner_;
  if (!is_valid_tag(tag)) return MQ_ERR_ALLOCATOR_INVALID_TAG;

  std::lock_guard<std::mutex> lock(children_mutex_);
  if (detached()) return MQ_ERR_ALLOCATOR_HIERARCHY;
  if (children_.count(id) != 0) return MQ_ERR_ALLOCATOR_CREATE;

  std::shared_ptr<MQTTAllocator> child(new MQTTAllocator(
      id, static_cast<mq_memory_tag>(tag), limit, owner, shared_from_this()));
  children_.emplace(id, child);
  out = std::move(child);
  return MQ_SUCCESS;
}

int MQTTAllocator::find_child(const std::string& id,
                              std::shared_ptr<MQTTAllocator>& out) const {
  std::lock_guard<std::mutex> lock(children_mutex_);
  auto it = children_.find(id);
  if (it == children_.end()) return MQ_ERR_ALLOCATOR_NOT_FOUND;

  out = it->second;
  return MQ_SUCCESS;
}

int MQTTAllocator::remove_child(const std::string& id) {
  std::shared_ptr<MQTTAllocator> child;
  {
    std::lock_guard<std::mutex> lock(children_mutex_);
    auto it = children_.find(id);
    if (it == children_.end()) return MQ_ERR_ALLOCATOR_NOT_FOUND;
    if (it->second->is_component()) return MQ_ERR_ALLOCATOR_HIERARCHY;
    child = std::move(it->second);
    children_.erase(it);
  }

  // Outside this node's lock: detaching takes the child's locks, top-down.
  child->detach_subtree();
  return MQ_SUCCESS;
}

// Marks this node and everything below as detached and drops the downward
// references, so that a removed subtree is kept alive only by its live blocks
// (through their upward parent chain) and is freed with the last of them.
void MQTTAllocator::detach_subtree() {
  std::map<std::string, std::shared_ptr<MQTTAllocator>> children;
  {
    std::lock_guard<std::mutex> lock(children_mutex_);
    detached_.store(true, std::memory_order_release);
    children.swap(children_);
  }
  for (auto& entry : children) entry.second->detach_subtree();
}

std::vector<std::shared_ptr<MQTTAllocator>> MQTTAllocator::children() const {
  std::lock_guard<std::mutex> lock(children_mutex_);
  std::vector<std::shared_ptr<MQTTAllocator>> result;
  result.reserve(children_.size());
  for (const auto& entry : children_) result.push_back(entry.second);
  return result;
}

// Each node is charged with a compare-and-swap that checks its limit, so no
// node ever passes its limit whatever other threads do. When a node refuses,
// the nodes below it are uncharged again. Until then they count the bytes,
// which can make a concurrent allocation fail early but never pass a limit.
bool MQTTAllocator::charge(size_t bytes, LimitRefusal* refusal) {
  for (MQTTAllocator* node = this; node != nullptr; node = node->parent_.get()) {
    bool confined = node->owner_ != 0;
    size_t current = node->usage_.load(std::memory_order_relaxed);
    do {
      size_t limit = node->limit_.load(std::memory_order_relaxed);
      bool overflows = current > SIZE_MAX - bytes;
      if (overflows || (limit != 0 && current + bytes > limit)) {
        node->refused(bytes, current, limit, refusal);
        for (MQTTAllocator* undo = this; undo != node; undo = undo->parent_.get()) {
          sub(undo->usage_, bytes, undo->owner_ != 0);
        }
        return false;
      }
      if (confined) {
        node->usage_.store(current + bytes, std::memory_order_relaxed);
        break;
      }
    } while (!node->usage_.compare_exchange_weak(current, current + bytes,
                                                 std::memory_order_relaxed));
  }
  return true;
}

// Runs once the block exists, so that neither a refused charge nor a charge
// for a block the backend could not provide ever shows up as a peak.
void MQTTAllocator::raise_peaks() {
  for (MQTTAllocator* node = this; node != nullptr; node = node->parent_.get()) {
    size_t now = node->usage_.load(std::memory_order_relaxed);
    size_t peak = node->peak_.load(std::memory_order_relaxed);
    if (now <= peak) continue;
    if (node->owner_ != 0) {
      node->peak_.store(now, std::memory_order_relaxed);
      continue;
    }
    while (now > peak &&
           !node->peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
}

bool MQTTAllocator::has_room(size_t usable, size_t freed) const {
  for (const MQTTAllocator* node = this; node != nullptr; node = node->parent_.get()) {
    size_t limit = node->limit_.load(std::memory_order_relaxed);
    if (limit == 0) continue;
    size_t usage = node->usage_.load(std::memory_order_relaxed);
    size_t remaining = usage > freed ? usage - freed : 0;
    if (usable > limit || remaining > limit - usable) return false;
  }
  return true;
}

void MQTTAllocator::refused(size_t bytes, size_t usage, size_t limit,
                            LimitRefusal* refusal) {
  total_refusals_.fetch_add(1, std::memory_order_relaxed);
  tag_refusal_add(tag_);
  if (refusal == nullptr) return;

  refusal->allocator_id = id_;
  refusal->tag = tag_;
  refusal->requested = bytes;
  refusal->usage = usage;
  refusal->limit = limit;
}

void MQTTAllocator::uncharge(size_t bytes) {
  for (MQTTAllocator* node = this; node != nullptr; node = node->parent_.get()) {
    sub(node->usage_, bytes, node->owner_ != 0);
  }
}

int MQTTAllocator::allocate(size_t size, void*& out, size_t& usable,
                            LimitRefusal* refusal) {
  return allocate(size, out, usable, refusal, this_thread_counters());
}

int MQTTAllocator::allocate(size_t size, void*& out, size_t& usable, LimitRefusal* refusal,
                            ThreadCounters& counters) {
  if (detached()) return MQ_ERR_ALLOCATOR_NOT_FOUND;
  bool confined = owner_ != 0;
  if (confined && owner_ != counters.thread_id()) return MQ_ERR_ALLOCATOR_HIERARCHY;

  Backend& backend = Backend::instance();
  add<uint64_t>(total_requested_bytes_, size, confined);

  // tcmalloc reports the usable size before allocating (nallocx), so a
  // rejected request never touches the heap. The system allocator reports it
  // only afterwards, so there the block is allocated first and freed again.
  size_t predicted = backend.predicted_size(size);
  void* ptr = nullptr;
  size_t charged = 0;
  if (predicted != 0) {
    if (!charge(predicted, refusal)) {
      return MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED;
    }
    charged = predicted;
    ptr = backend.allocate(size, counters);
    if (ptr == nullptr) {
      uncharge(charged);
      return MQ_ERR_ALLOCATOR;
    }
  } else {
    ptr = backend.allocate(size, counters);
    if (ptr == nullptr) return MQ_ERR_ALLOCATOR;
    charged = backend.usable_size(ptr);
    if (!charge(charged, refusal)) {
      backend.release(ptr, counters);
      return MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED;
    }
  }

  // deallocate(ptr) uncharges the backend's usable size; keep the two equal
  // even if the prediction was off. Without a prediction, the charge already
  // is the usable size.
  bool checked = predicted == 0 || backend.prediction_exact();
  size_t actual = checked ? charged : backend.usable_size(ptr);
  if (actual != charged) {
    uncharge(charged);
    if (!charge(actual, refusal)) {
      backend.release(ptr, counters);
      return MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED;
    }
    charged = actual;
  }

  raise_peaks();
  add(self_usage_, charged, confined);
  add<uint64_t>(live_blocks_, 1, confined);
  add<uint64_t>(total_allocations_, 1, confined);
  counters.add(tag_, static_cast<int64_t>(charged));
  out = ptr;
  usable = charged;
  return MQ_SUCCESS;
}

int MQTTAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return MQ_ERR_INVALID_ARGS;

  return deallocate(ptr, Backend::instance().usable_size(ptr));
}

int MQTTAllocator::deallocate(void* ptr, size_t usable) {
  return deallocate(ptr, usable, this_thread_counters());
}

int MQTTAllocator::deallocate(void* ptr, size_t usable, ThreadCounters& counters) {
  if (ptr == nullptr) return MQ_ERR_INVALID_ARGS;

  Backend::instance().release(ptr, counters);
  uncharge(usable);
  bool confined = owner_ != 0;
  sub(self_usage_, usable, confined);
  sub<uint64_t>(live_blocks_, 1, confined);
  counters.add(tag_, -static_cast<int64_t>(usable));
  return MQ_SUCCESS;
}

AllocatorStats MQTTAllocator::stats() const {
  AllocatorStats stats;
  stats.usage = usage();
  stats.self_usage = self_usage_.load(std::memory_order_relaxed);
  stats.peak = peak();
  stats.limit = limit();
  stats.live_blocks = live_blocks_.load(std::memory_order_relaxed);
  stats.total_allocations = total_allocations_.load(std::memory_order_relaxed);
  stats.total_requested_bytes = total_requested_bytes_.load(std::memory_order_relaxed);
  stats.total_refusals = total_refusals_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace mqsa
