#include "tags.h"

#include <atomic>

namespace mqsa {
namespace {

std::atomic<size_t> g_tag_usage[MEM_TAG_COUNT];
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

void tag_usage_add(mq_memory_tag tag, size_t bytes) {
  g_tag_usage[tag].fetch_add(bytes, std::memory_order_relaxed);
}

void tag_usage_sub(mq_memory_tag tag, size_t bytes) {
  g_tag_usage[tag].fetch_sub(bytes, std::memory_order_relaxed);
}

size_t tag_usage(mq_memory_tag tag) {
  return g_tag_usage[tag].load(std::memory_order_relaxed);
}

void tag_refusal_add(mq_memory_tag tag) {
  g_tag_refusals_total[tag].fetch_add(1, std::memory_order_relaxed);
}

uint64_t tag_refusals_total(mq_memory_tag tag) {
  return g_tag_refusals_total[tag].load(std::memory_order_relaxed);
}

}  // namespace mqsa
