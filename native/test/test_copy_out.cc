// copy_out against the source bytes, for sizes around the streaming
// threshold and every destination and source alignment within 16 bytes.
#include <cstdint>
#include <vector>

#include "check.h"
#include "copy_out.h"

namespace {

// Copies `size` bytes between the given offsets and counts the bytes that
// differ, plus any byte changed just outside the destination range.
int copy_errors(size_t size, size_t target_offset, size_t source_offset) {
  std::vector<uint8_t> source(size + 32);
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<uint8_t>(i * 131 + 7);
  std::vector<uint8_t> target(size + 64, 0xEE);

  mqsa::copy_out(target.data() + 16 + target_offset, source.data() + source_offset, size);

  int errors = 0;
  for (size_t i = 0; i < size; ++i) {
    if (target[16 + target_offset + i] != source[source_offset + i]) errors += 1;
  }
  if (target[15 + target_offset] != 0xEE) errors += 1;
  if (target[16 + target_offset + size] != 0xEE) errors += 1;
  return errors;
}

}  // namespace

TEST(copy_out_small_sizes) {
  int errors = 0;
  for (size_t size : {1u, 15u, 64u, 1000u}) errors += copy_errors(size, 3, 5);
  CHECK_EQ(errors, 0);
}

TEST(copy_out_around_threshold) {
  const size_t threshold = mqsa::kStreamingCopyFrom;
  int errors = 0;
  for (size_t size : {threshold - 1, threshold, threshold + 1, threshold + 63, 4 * threshold + 17}) {
    errors += copy_errors(size, 0, 0);
  }
  CHECK_EQ(errors, 0);
}

TEST(copy_out_every_alignment) {
  int errors = 0;
  for (size_t target_offset = 0; target_offset < 16; ++target_offset) {
    for (size_t source_offset = 0; source_offset < 16; ++source_offset) {
      errors += copy_errors(mqsa::kStreamingCopyFrom + 100, target_offset, source_offset);
    }
  }
  CHECK_EQ(errors, 0);
}

TEST_MAIN()
