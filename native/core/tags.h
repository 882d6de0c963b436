// Memory tags: what an allocator's memory is for. The list below is the single
// source of truth for the C++ enum, the tag names and the tags exported to
// JavaScript.
#pragma once

#include <cstddef>
#include <cstdint>

#define MQ_TAG_LIST(X)        \
  X(MEM_TAG_ROOT)             \
  X(MEM_TAG_SOCKET)           \
  X(MEM_TAG_CLIENT)           \
  X(MEM_TAG_SESSION_MANAGER)  \
  X(MEM_TAG_TOPIC_TREE)       \
  X(MEM_TAG_SERVER)           \
  X(MEM_TAG_SESSION)          \
  X(MEM_TAG_SESSION_QUEUE)    \
  X(MEM_TAG_SESSION_WORKER)   \
  X(MEM_TAG_MESSAGE_CACHE)

enum mq_memory_tag : int32_t {
#define MQ_TAG_ENUM(name) name,
  MQ_TAG_LIST(MQ_TAG_ENUM)
#undef MQ_TAG_ENUM
  MEM_TAG_COUNT
};

namespace mqsa {

// Returns true when `tag` is one of the listed tags.
bool is_valid_tag(int32_t tag);

// Returns the tag's name ("MEM_TAG_SESSION"), or nullptr for an invalid tag.
const char* tag_name(int32_t tag);

// Process-wide bytes currently allocated directly from allocators of each
// tag (usable sizes). Every allocation and free updates the calling
// thread's counter for its tag (see thread_counters.h).
size_t tag_usage(mq_memory_tag tag);

// Process-wide count of allocations refused by a limit, by the tag of the
// allocator that was asked for memory. Only grows.
void tag_refusal_add(mq_memory_tag tag);
uint64_t tag_refusals_total(mq_memory_tag tag);

}  // namespace mqsa
