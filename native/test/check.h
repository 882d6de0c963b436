// A minimal test harness for the native tests. CHECK records a failure with
// its line and goes on, and main() returns non-zero on any failure for ctest.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace mqsa_test {

struct TestCase {
  const char* name;
  std::function<void()> body;
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

inline int& failures() {
  static int count = 0;
  return count;
}

struct Register {
  Register(const char* name, std::function<void()> body) {
    registry().push_back({name, std::move(body)});
  }
};

inline int run_all() {
  for (const TestCase& test : registry()) {
    int before = failures();
    test.body();
    std::printf("%s %s\n", failures() == before ? "ok  " : "FAIL", test.name);
  }
  std::printf("%d failure(s)\n", failures());
  return failures() == 0 ? 0 : 1;
}

}  // namespace mqsa_test

#define MQSA_CONCAT_INNER(a, b) a##b
#define MQSA_CONCAT(a, b) MQSA_CONCAT_INNER(a, b)
#define TEST(name)                                                    \
  static void name();                                                 \
  static mqsa_test::Register MQSA_CONCAT(register_, name)(#name, name); \
  static void name()

#define CHECK(condition)                                                   \
  do {                                                                     \
    if (!(condition)) {                                                    \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #condition); \
      mqsa_test::failures() += 1;                                          \
    }                                                                      \
  } while (0)

#define CHECK_EQ(actual, expected)                                             \
  do {                                                                         \
    auto actual_value = (actual);                                              \
    auto expected_value = (expected);                                          \
    if (!(actual_value == expected_value)) {                                   \
      std::printf("  %s:%d: %s == %s failed: got %s, expected %s\n", __FILE__, \
                  __LINE__, #actual, #expected,                                \
                  std::to_string(actual_value).c_str(),                        \
                  std::to_string(expected_value).c_str());                     \
      mqsa_test::failures() += 1;                                              \
    }                                                                          \
  } while (0)

#define TEST_MAIN() \
  int main() { return mqsa_test::run_all(); }
