// AVX-512 (F/DQ/BW/VL, the x86-64-v4 level), 16 lanes. Only included by kernels_avx512.cpp.
#pragma once
#include <immintrin.h>
#include <cstddef>
#include <cstdint>

namespace {

// GCC 12's avx512fintrin.h writes these intrinsics with an "undefined" pass-through register
// (`__m512 __Y = __Y;`), which -Wmaybe-uninitialized reports at every inlined use: over 300
// warnings in a build. Their masked forms with an explicit source and a full mask are the same
// instruction (the source is dead), and say what they compute.
namespace x512 {
inline __m512 max_ps(__m512 a, __m512 b) { return _mm512_mask_max_ps(a, static_cast<__mmask16>(0xFFFF), a, b); }
inline __m512 min_ps(__m512 a, __m512 b) { return _mm512_mask_min_ps(a, static_cast<__mmask16>(0xFFFF), a, b); }
inline __m512 scalef_ps(__m512 a, __m512 b) { return _mm512_mask_scalef_ps(a, static_cast<__mmask16>(0xFFFF), a, b); }
inline __m512 sqrt_ps(__m512 a) { return _mm512_mask_sqrt_ps(a, static_cast<__mmask16>(0xFFFF), a); }
inline __m512 getexp_ps(__m512 a) { return _mm512_mask_getexp_ps(a, static_cast<__mmask16>(0xFFFF), a); }
inline __m512d cvtps_pd(__m256 a) { return _mm512_mask_cvtps_pd(_mm512_setzero_pd(), static_cast<__mmask8>(0xFF), a); }
// Halves of a register. GCC 12 writes even _mm512_castps512_ps256 through an undefined
// register; a vector shuffle is the plain subregister (low) or one vextract (high).
inline __m256 lo_ps(__m512 a) { return reinterpret_cast<__m256>(__builtin_shufflevector(reinterpret_cast<__v16sf>(a), reinterpret_cast<__v16sf>(a), 0, 1, 2, 3, 4, 5, 6, 7)); }
inline __m256 hi_ps(__m512 a) { return reinterpret_cast<__m256>(__builtin_shufflevector(reinterpret_cast<__v16sf>(a), reinterpret_cast<__v16sf>(a), 8, 9, 10, 11, 12, 13, 14, 15)); }
inline __m256d lo_pd(__m512d a) { return reinterpret_cast<__m256d>(__builtin_shufflevector(reinterpret_cast<__v8df>(a), reinterpret_cast<__v8df>(a), 0, 1, 2, 3)); }
inline __m256d hi_pd(__m512d a) { return reinterpret_cast<__m256d>(__builtin_shufflevector(reinterpret_cast<__v8df>(a), reinterpret_cast<__v8df>(a), 4, 5, 6, 7)); }
// the low / high 8 floats of a, widened to double
inline __m512d cvt_lo_pd(__m512 a) { return cvtps_pd(lo_ps(a)); }
inline __m512d cvt_hi_pd(__m512 a) { return cvtps_pd(hi_ps(a)); }
// Horizontal sums in the order of GCC's _mm512_reduce_add_ps / _pd (halves, quarters, pairs),
// so the results are the bits those gave.
inline float reduce_add_ps(__m512 v) {
  const __m256 h = _mm256_add_ps(hi_ps(v), lo_ps(v));
  const __m128 q = _mm_add_ps(_mm256_extractf128_ps(h, 1), _mm256_castps256_ps128(h));
  const __m128 p = _mm_add_ps(q, _mm_shuffle_ps(q, q, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtss_f32(p) + _mm_cvtss_f32(_mm_shuffle_ps(p, p, _MM_SHUFFLE(1, 1, 1, 1)));
}
inline double reduce_add_pd(__m512d v) {
  const __m256d h = _mm256_add_pd(hi_pd(v), lo_pd(v));
  const __m128d q = _mm_add_pd(_mm256_extractf128_pd(h, 1), _mm256_castpd256_pd128(h));
  return _mm_cvtsd_f64(q) + _mm_cvtsd_f64(_mm_unpackhi_pd(q, q));
}
}  // namespace x512

struct V {
  using reg = __m512;
  static constexpr size_t W = 16;
  static constexpr const char* name = "avx512";
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static __mmask16 tail_mask(size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static reg load_tail(const float* p, size_t n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
  static void store_tail(float* p, reg v, size_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(reg a) { return x512::reduce_add_ps(a); }
  static reg max(reg a, reg b) { return x512::max_ps(a, b); }
  // bit i set where a[i] <= b[i]
  static unsigned mask_le(reg a, reg b) { return static_cast<unsigned>(_mm512_cmp_ps_mask(a, b, _CMP_LE_OQ)); }
  // exp(x) for x in [-87.3, 88.3] (clamped), Cephes polynomial, about 2 ulp.
  static reg exp(reg x) {
    x = x512::min_ps(x512::max_ps(x, _mm512_set1_ps(-87.3365f)), _mm512_set1_ps(88.3762f));
    const reg t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const reg fx = _mm512_mask_roundscale_ps(t, static_cast<__mmask16>(0xFFFF), t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    reg y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    return x512::scalef_ps(y, fx);
  }
  static constexpr size_t kR = 12;
  // log(x) for positive normal x (Cephes polynomial on the mantissa in [sqrt(1/2), sqrt(2))).
  static reg log(reg x) {
    reg m = _mm512_mask_getmant_ps(x, static_cast<__mmask16>(0xFFFF), x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    reg e = x512::getexp_ps(x);
    const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356237f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_ps(e, big, e, _mm512_set1_ps(1.0f));
    const reg xx = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    const reg z = _mm512_mul_ps(xx, xx);
    reg y = _mm512_set1_ps(7.0376836292E-2f);
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(-1.1514610310E-1f));
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(1.1676998740E-1f));
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(-1.2420140846E-1f));
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(1.4249322787E-1f));
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(-1.6668057665E-1f));
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(2.0000714765E-1f));
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(-2.4999993993E-1f));
    y = _mm512_fmadd_ps(y, xx, _mm512_set1_ps(3.3333331174E-1f));
    y = _mm512_mul_ps(_mm512_mul_ps(y, xx), z);
    y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
    y = _mm512_fnmadd_ps(_mm512_set1_ps(0.5f), z, y);
    return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(xx, y));
  }
  static reg sqrt(reg x) { return x512::sqrt_ps(x); }
  static reg abs(reg x) { return _mm512_abs_ps(x); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg min(reg a, reg b) { return x512::min_ps(a, b); }
  // v where x >= t, else exactly 0.
  static reg keep_ge(reg v, reg x, reg t) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, t, _CMP_GE_OQ), v); }
  // p[0..W) += v, in double.
  static void add_to_double(double* p, reg v) {
    _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), x512::cvt_lo_pd(v)));
    _mm512_storeu_pd(p + 8, _mm512_add_pd(_mm512_loadu_pd(p + 8), x512::cvt_hi_pd(v)));
  }
};
}  // namespace
