// LiveTable: the live session buffers of one thread, keyed by the data
// pointer of their block. release() looks a Buffer up here by the pointer
// Node reports for it, so the table decides whether a Buffer belongs to
// this package at all.
//
// An open-addressing table with linear probing: a lookup touches one or two
// adjacent slots and an insert allocates nothing until the table grows. A
// node-based map would allocate and free one node per buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mqsa {

struct BufferRecord;

class LiveTable {
 public:
  LiveTable() { slots_.resize(kMinCapacity); }

  size_t size() const { return count_; }

  // Adds `record` under `key`, which must not be in the table.
  void insert(void* key, BufferRecord* record) {
    if ((count_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
    size_t index = home(key);
    while (slots_[index].key != nullptr) index = next(index);
    slots_[index] = Slot{key, record};
    count_ += 1;
  }

  // Returns the record under `key`, or nullptr.
  BufferRecord* find(const void* key) const {
    if (key == nullptr) return nullptr;
    for (size_t index = home(key);; index = next(index)) {
      const Slot& slot = slots_[index];
      if (slot.key == key) return slot.record;
      if (slot.key == nullptr) return nullptr;
    }
  }

  // Removes `key` if present. The slots after it move back to fill the gap,
  // so lookups never need tombstones.
  void erase(const void* key) {
    size_t index = home(key);
    while (slots_[index].key != key) {
      if (slots_[index].key == nullptr) return;
      index = next(index);
    }

    size_t gap = index;
    for (size_t probe = next(gap); slots_[probe].key != nullptr; probe = next(probe)) {
      size_t home_slot = home(slots_[probe].key);
      // The entry at `probe` may move into the gap only if its home slot is
      // not in the cyclic range (gap, probe].
      bool home_after_gap = gap <= probe ? (home_slot > gap && home_slot <= probe)
                                         : (home_slot > gap || home_slot <= probe);
      if (home_after_gap) continue;
      slots_[gap] = slots_[probe];
      gap = probe;
    }
    slots_[gap] = Slot{};
    count_ -= 1;

    // Give memory back after a spike of live buffers.
    if (slots_.size() > kMinCapacity && count_ * 8 < slots_.size()) rehash(slots_.size() / 2);
  }

  // Calls `visit(record)` for every entry. `visit` must not change the table.
  template <typename Visit>
  void for_each(Visit visit) const {
    for (const Slot& slot : slots_) {
      if (slot.key != nullptr) visit(slot.record);
    }
  }

 private:
  struct Slot {
    const void* key = nullptr;
    BufferRecord* record = nullptr;
  };

  static constexpr size_t kMinCapacity = 64;

  // Blocks are at least 8-byte aligned, so the low 3 bits carry nothing. The
  // multiplier spreads the remaining bits over the word, and the top bits
  // pick the slot.
  size_t home(const void* key) const {
    uint64_t bits = reinterpret_cast<uintptr_t>(key) >> 3;
    return static_cast<size_t>((bits * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  size_t next(size_t index) const { return (index + 1) & (slots_.size() - 1); }

  void rehash(size_t capacity) {
    std::vector<Slot> old(capacity);
    old.swap(slots_);
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) shift_ -= 1;
    for (const Slot& slot : old) {
      if (slot.key == nullptr) continue;
      size_t index = home(slot.key);
      while (slots_[index].key != nullptr) index = next(index);
      slots_[index] = slot;
    }
  }

  std::vector<Slot> slots_;
  size_t count_ = 0;
  unsigned shift_ = 64 - 6;  // keeps log2(kMinCapacity) bits of the hash
};

}  // namespace mqsa
