#include "errors.h"

const char* mqtt_error_string(int code) {
  switch (code) {
#define MQ_ERROR_MESSAGE(name, value, message) \
  case value:                                  \
    return message;
    MQ_ERROR_LIST(MQ_ERROR_MESSAGE)
#undef MQ_ERROR_MESSAGE
  }
  return "unknown error code";
}

const char* mqtt_error_name(int code) {
  switch (code) {
#define MQ_ERROR_NAME(name, value, message) \
  case value:                               \
    return #name;
    MQ_ERROR_LIST(MQ_ERROR_NAME)
#undef MQ_ERROR_NAME
  }
  return nullptr;
}
