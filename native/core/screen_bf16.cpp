// The bf16 screen's kernel (screen_bf16.hpp). Compiled with the AVX-512 flags (native/sources.json);
// the kernel itself also needs AVX512_BF16, enabled on that one function and run only where
// the CPU reports it.
#include "screen_bf16.hpp"

#include <cstring>

#include "kernels.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && defined(__AVX512F__)
#include <immintrin.h>
#define SF_BF16_KERNEL 1
#endif

namespace sf {

#ifdef SF_BF16_KERNEL
namespace {

constexpr size_t PR = kPanelRows;
static_assert(PR == 12, "dot_bf16 dispatches micro-tiles of 1-12 rows");

// RR rows of one panel against the block's 32 queries, pairs [t0, t0 + tc).
template <size_t RR>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void bf16_block(const uint16_t* XTb, const uint16_t* Yp,
                                                                                size_t tc, float* S, bool accumulate) {
  __m512 a0[RR], a1[RR];
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    a0[r] = accumulate ? _mm512_loadu_ps(S + r * 32) : _mm512_setzero_ps();
    a1[r] = accumulate ? _mm512_loadu_ps(S + r * 32 + 16) : _mm512_setzero_ps();
  }
  for (size_t t = 0; t < tc; ++t) {
    const __m512bh x0 = (__m512bh)_mm512_loadu_si512(XTb + t * 64);
    const __m512bh x1 = (__m512bh)_mm512_loadu_si512(XTb + t * 64 + 32);
    const uint16_t* y = Yp + t * 2 * PR;
    // the panels are one sequential stream (no blocking over pairs): 2 KiB ahead of it, as
    // measured (a tile streaming from memory: 270 -> 395 GFLOP/s on one Zen 5 core)
    _mm_prefetch(reinterpret_cast<const char*>(y) + 2048, _MM_HINT_T0);
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      int32_t pair;
      std::memcpy(&pair, y + 2 * r, 4);
      const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
      a0[r] = _mm512_dpbf16_ps(a0[r], x0, b);
      a1[r] = _mm512_dpbf16_ps(a1[r], x1, b);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    _mm512_storeu_ps(S + r * 32, a0[r]);
    _mm512_storeu_ps(S + r * 32 + 16, a1[r]);
  }
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) void dot_bf16(const uint16_t* XTb, const uint16_t* Ybp, size_t j0,
                                                                     size_t nt, size_t dp, float* S) {
  // Pairs per pass: all of them up to d = 1,024, so a tile's panels are read as one stream
  // (blocks of 128 pairs, the block's slice in L1, ran at 190 GFLOP/s against 275 from memory).
  constexpr size_t kTC = 512;
  const size_t pairs = dp / 2;
  for (size_t t0 = 0; t0 < pairs; t0 += kTC) {
    const size_t tc = pairs - t0 < kTC ? pairs - t0 : kTC;
    const bool acc = t0 > 0;
    for (size_t j = j0; j < j0 + nt;) {
      const size_t in_panel = PR - j % PR, left = j0 + nt - j;
      const size_t rr = in_panel < left ? in_panel : left;
      const uint16_t* y = Ybp + (j / PR) * PR * dp + t0 * 2 * PR + 2 * (j % PR);
      float* s = S + (j - j0) * 32;
      const uint16_t* x = XTb + t0 * 64;
      switch (rr) {  // a micro-tile never straddles a panel (kPanelRows = 12)
        case 12: bf16_block<12>(x, y, tc, s, acc); break;
        case 11: bf16_block<11>(x, y, tc, s, acc); break;
        case 10: bf16_block<10>(x, y, tc, s, acc); break;
        case 9: bf16_block<9>(x, y, tc, s, acc); break;
        case 8: bf16_block<8>(x, y, tc, s, acc); break;
        case 7: bf16_block<7>(x, y, tc, s, acc); break;
        case 6: bf16_block<6>(x, y, tc, s, acc); break;
        case 5: bf16_block<5>(x, y, tc, s, acc); break;
        case 4: bf16_block<4>(x, y, tc, s, acc); break;
        case 3: bf16_block<3>(x, y, tc, s, acc); break;
        case 2: bf16_block<2>(x, y, tc, s, acc); break;
        default: bf16_block<1>(x, y, tc, s, acc); break;
      }
      j += rr;
    }
  }
}

}  // namespace

DotBf16Fn dot_bf16_kernel() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512bf16");
  return ok ? dot_bf16 : nullptr;
}
#else
DotBf16Fn dot_bf16_kernel() { return nullptr; }
#endif

}  // namespace sf
