// copy_out: copies a payload out of native storage into a Buffer that the
// caller has just created. Such a Buffer's memory is rarely in the cache, and
// an ordinary copy first reads every destination line it then overwrites.
// For large payloads, streaming stores write straight to memory and skip
// those reads. The copy then is not in the cache either, which costs little
// next to the copy for payloads this large.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace mqsa {

// Payloads from this size on are copied with streaming stores. Below it the
// destination is more likely cached, so an ordinary copy is as fast. The
// queue benchmark measured the break-even below 16 KiB on a 2-core EPYC VM.
constexpr size_t kStreamingCopyFrom = 16 * 1024;

inline void copy_out(void* target, const void* source, size_t size) {
#if defined(__x86_64__)
  if (size >= kStreamingCopyFrom) {
    char* out = static_cast<char*>(target);
    const char* in = static_cast<const char*>(source);

    // Copy up to the first 16-byte boundary of the destination normally.
    size_t head = (16 - (reinterpret_cast<uintptr_t>(out) & 15)) & 15;
    std::memcpy(out, in, head);
    out += head;
    in += head;
    size -= head;

    size_t blocks = size / 64;
    for (size_t i = 0; i < blocks; ++i, out += 64, in += 64) {
      __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in));
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 16));
      __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 32));
      __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(out), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + 48), d);
    }
    // Streaming stores are weakly ordered: fence them before JavaScript
    // can read the Buffer.
    _mm_sfence();
    std::memcpy(out, in, size % 64);
    return;
  }
#endif
  std::memcpy(target, source, size);
}

}  // namespace mqsa
