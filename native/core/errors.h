// Error codes of the native core. The list below is the single source of
// truth: the C++ enum, mqtt_error_string() and the codes exported to
// JavaScript are all generated from it.
#pragma once

// X(name, value, message)
#define MQ_ERROR_LIST(X)                                                      \
  X(MQ_SUCCESS, 0, "success")                                                 \
  X(MQ_ERR_ALLOCATOR, -700, "allocator error")                                \
  X(MQ_ERR_ALLOCATOR_CREATE, -701, "allocator could not be created")          \
  X(MQ_ERR_ALLOCATOR_NOT_FOUND, -702, "allocator not found")                  \
  X(MQ_ERR_ALLOCATOR_CLEANUP, -703, "allocator cleanup failed")               \
  X(MQ_ERR_ALLOCATOR_LIMIT_EXCEEDED, -704, "allocator memory limit exceeded") \
  X(MQ_ERR_ALLOCATOR_INVALID_PARENT, -705, "invalid parent allocator")        \
  X(MQ_ERR_ALLOCATOR_INVALID_TAG, -706, "invalid memory tag")                 \
  X(MQ_ERR_ALLOCATOR_HIERARCHY, -707, "allocator hierarchy error")            \
  X(MQ_ERR_INVALID_ARGS, -800, "invalid arguments")

enum mq_error_code {
#define MQ_ERROR_ENUM(name, value, message) name = value,
  MQ_ERROR_LIST(MQ_ERROR_ENUM)
#undef MQ_ERROR_ENUM
};

// Returns a static, human-readable description of `code`, or
// "unknown error code" for a value outside the list.
const char* mqtt_error_string(int code);

// Returns the symbolic name of `code` ("MQ_ERR_INVALID_ARGS"), or nullptr for
// a value outside the list.
const char* mqtt_error_name(int code);
