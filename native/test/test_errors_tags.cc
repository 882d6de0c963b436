// Error codes and memory tags: exact values, names and messages. The values
// are public API, shared with JavaScript, so a change here breaks callers.
#include <climits>
#include <cstring>
#include <string>

#include "check.h"
#include "errors.h"
#include "tags.h"

namespace {

struct ErrorCase {
  int code;
  int expected_value;
  const char* name;
};

const ErrorCase kErrors[] = {
    {MQ_SUCCESS, 0, "MQ_SUCCESS"},
    {MQ_ERR_ALLOCATOR, -700, "MQ_ERR_ALLOCATOR"},
    {MQ_ERR_ALLOCATOR_CREATE, -701, "MQ_ERR_ALLOCATOR_CREATE"},
    {MQ_ERR_ALLOCATOR_NOT_FOUND, -702, "MQ_ERR_ALLOCATOR_NOT_FOUND"},
    {MQ_ERR_ALLOCATOR_CLEANUP, -703, "MQ_ERR_ALLOCATOR_CLEANUP"},
    {MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED, -704, "MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED"},
    {MQ_ERR_ALLOCATOR_INVALID_PARENT, -705, "MQ_ERR_ALLOCATOR_INVALID_PARENT"},
    {MQ_ERR_ALLOCATOR_INVALID_TAG, -706, "MQ_ERR_ALLOCATOR_INVALID_TAG"},
    {MQ_ERR_ALLOCATOR_HIERARCHY, -707, "MQ_ERR_ALLOCATOR_HIERARCHY"},
    {MQ_ERR_INVALID_ARGS, -800, "MQ_ERR_INVALID_ARGS"},
};

// In the order the tags are listed, which fixes their numeric values.
const char* const kTagNames[] = {
    "MEM_TAG_ROOT",          "MEM_TAG_SOCKET",        "MEM_TAG_CLIENT",
    "MEM_TAG_SESSION_MANAGER", "MEM_TAG_TOPIC_TREE",  "MEM_TAG_SERVER",
    "MEM_TAG_SESSION",       "MEM_TAG_SESSION_QUEUE", "MEM_TAG_SESSION_WORKER",
    "MEM_TAG_MESSAGE_CACHE",
};

const char kUnknown[] = "unknown error code";

bool same_text(const char* a, const char* b) {
  return a != nullptr && b != nullptr && std::strcmp(a, b) == 0;
}

}  // namespace

TEST(error_codes_exact_values) {
  for (const ErrorCase& error : kErrors) {
    if (error.code != error.expected_value) std::printf("  %s\n", error.name);
    CHECK_EQ(error.code, error.expected_value);
  }
}

TEST(error_codes_have_messages) {
  for (const ErrorCase& error : kErrors) {
    const char* message = mqtt_error_string(error.code);
    std::string text = message != nullptr ? message : "";
    if (text.empty() || text == kUnknown) std::printf("  %s\n", error.name);
    CHECK(message != nullptr);
    CHECK(!text.empty());
    CHECK(text != kUnknown);
  }
}

TEST(error_messages_distinct) {
  const size_t count = sizeof(kErrors) / sizeof(kErrors[0]);
  for (size_t i = 0; i < count; ++i) {
    for (size_t j = i + 1; j < count; ++j) {
      CHECK(!same_text(mqtt_error_string(kErrors[i].code),
                       mqtt_error_string(kErrors[j].code)));
    }
  }
}

TEST(error_string_unknown_code) {
  const int unknown[] = {1, -1, -699, -708, -799, -801, 700, INT_MIN, INT_MAX};
  for (int code : unknown) {
    CHECK(same_text(mqtt_error_string(code), kUnknown));
  }
}

TEST(error_name_known_codes) {
  for (const ErrorCase& error : kErrors) {
    CHECK(same_text(mqtt_error_name(error.code), error.name));
  }
}

TEST(error_name_unknown_code) {
  CHECK(mqtt_error_name(-708) == nullptr);
  CHECK(mqtt_error_name(1) == nullptr);
  CHECK(mqtt_error_name(INT_MIN) == nullptr);
}

TEST(tag_count_matches_list) {
  CHECK_EQ(static_cast<size_t>(MEM_TAG_COUNT), sizeof(kTagNames) / sizeof(kTagNames[0]));
}

TEST(tag_values_in_list_order) {
  CHECK_EQ(static_cast<int>(MEM_TAG_ROOT), 0);
  CHECK_EQ(static_cast<int>(MEM_TAG_SESSION), 6);
  CHECK_EQ(static_cast<int>(MEM_TAG_MESSAGE_CACHE), 9);
}

TEST(tag_names_and_validity) {
  for (int32_t tag = 0; tag < MEM_TAG_COUNT; ++tag) {
    if (!same_text(mqsa::tag_name(tag), kTagNames[tag])) std::printf("  tag %d\n", tag);
    CHECK(mqsa::is_valid_tag(tag));
    CHECK(same_text(mqsa::tag_name(tag), kTagNames[tag]));
  }
}

TEST(tag_invalid_values) {
  CHECK(!mqsa::is_valid_tag(-1));
  CHECK(!mqsa::is_valid_tag(MEM_TAG_COUNT));
  CHECK(!mqsa::is_valid_tag(INT32_MIN));
  CHECK(!mqsa::is_valid_tag(INT32_MAX));
  CHECK(mqsa::tag_name(-1) == nullptr);
  CHECK(mqsa::tag_name(MEM_TAG_COUNT) == nullptr);
}

TEST_MAIN()
