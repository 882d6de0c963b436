// LiveTable against std::unordered_map as the reference: random inserts,
// lookups and erases over keys that are dense (adjacent blocks, which land
// in long probe runs) and sparse, through growth and shrinking.
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "check.h"
#include "live_table.h"

namespace {

using mqsa::BufferRecord;
using mqsa::LiveTable;

// Keys and values are made-up addresses; the table never dereferences them.
void* key_at(uintptr_t base, size_t index, size_t stride) {
  return reinterpret_cast<void*>(base + index * stride);
}

BufferRecord* value_for(const void* key) {
  return reinterpret_cast<BufferRecord*>(reinterpret_cast<uintptr_t>(key) ^ 0x5a5a);
}

// Runs `steps` random operations over `universe` possible keys and checks
// every lookup and the size against the reference after each step.
int run_against_reference(size_t universe, size_t stride, size_t steps, unsigned seed) {
  LiveTable table;
  std::unordered_map<const void*, BufferRecord*> reference;
  std::mt19937 random(seed);
  int mismatches = 0;

  for (size_t step = 0; step < steps; ++step) {
    void* key = key_at(0x10000, random() % universe, stride);
    bool present = reference.count(key) != 0;
    unsigned action = random() % 3;
    if (action == 0 && !present) {
      table.insert(key, value_for(key));
      reference.emplace(key, value_for(key));
    } else if (action == 1) {
      table.erase(key);
      reference.erase(key);
    }

    auto found = reference.find(key);
    BufferRecord* expected = found == reference.end() ? nullptr : found->second;
    if (table.find(key) != expected) mismatches += 1;
    if (table.size() != reference.size()) mismatches += 1;
  }

  // Every entry is still reachable, and for_each visits each once.
  for (const auto& entry : reference) {
    if (table.find(entry.first) != entry.second) mismatches += 1;
  }
  size_t visited = 0;
  table.for_each([&visited](BufferRecord*) { visited += 1; });
  if (visited != reference.size()) mismatches += 1;
  return mismatches;
}

}  // namespace

TEST(live_table_dense_keys) {
  CHECK_EQ(run_against_reference(2000, 16, 200000, 1), 0);
}

TEST(live_table_sparse_keys) {
  CHECK_EQ(run_against_reference(5000, 4096 + 8, 200000, 2), 0);
}

// Fill far past the first capacity, then empty again: the table grows and
// shrinks, and lookups stay right on the way.
TEST(live_table_grows_and_shrinks) {
  LiveTable table;
  std::vector<void*> keys;
  for (size_t i = 0; i < 100000; ++i) keys.push_back(key_at(0x100000, i, 48));

  for (void* key : keys) table.insert(key, value_for(key));
  CHECK_EQ(table.size(), keys.size());
  int missing = 0;
  for (void* key : keys) missing += table.find(key) == value_for(key) ? 0 : 1;
  CHECK_EQ(missing, 0);

  for (size_t i = 0; i < keys.size(); i += 2) table.erase(keys[i]);
  int wrong = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    BufferRecord* expected = i % 2 == 0 ? nullptr : value_for(keys[i]);
    wrong += table.find(keys[i]) == expected ? 0 : 1;
  }
  CHECK_EQ(wrong, 0);

  for (size_t i = 1; i < keys.size(); i += 2) table.erase(keys[i]);
  CHECK_EQ(table.size(), 0u);
  CHECK(table.find(keys[1]) == nullptr);
}

TEST(live_table_unknown_and_null_keys) {
  LiveTable table;
  int inserted = 0;
  table.insert(&inserted, value_for(&inserted));
  CHECK(table.find(nullptr) == nullptr);
  int elsewhere = 0;
  CHECK(table.find(&elsewhere) == nullptr);
  table.erase(&elsewhere);
  CHECK_EQ(table.size(), 1u);
  CHECK(table.find(&inserted) == value_for(&inserted));
}

TEST_MAIN()
