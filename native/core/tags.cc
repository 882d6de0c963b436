#include "tags.h"

#include <algorithm>
#include <atomic>

#include "thread_counters.h"

namespace mqsa {
namespace {

std::atomic<uint64_t> g_tag_refusals_total[MEM_TAG_COUNT];

}  // namespace

bool is_valid_tag(int32_t tag) { return tag >= 0 && tag < MEM_TAG_COUNT; }

const char* tag_name(int32_t tag) {
  switch (tag) {
#define MQ_TAG_NAME(name) \
  case name:              \
    return #name;
    MQ_TAG_LIST(MQ_TAG_NAME)
#undef MQ_TAG_NAME
  }
  return nullptr;
}

size_t tag_usage(mq_memory_tag tag) {
  // A free in flight on another thread can leave a read briefly below zero.
  return static_cast<size_t>(std::max<int64_t>(counter_total(tag), 0));
}

void tag_refusal_add(mq_memory_tag tag) {
  g_tag_refusals_total[tag].fetch_add(1, std::memory_order_relaxed);
}

uint64_t tag_refusals_total(mq_memory_tag tag) {
  return g_tag_refusals_total[tag].load(std::memory_order_relaxed);
}

}  // namespace mqsa
