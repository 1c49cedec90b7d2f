// AVX-512 (F/DQ/BW/VL, the x86-64-v4 level), 16 lanes. Only included by kernels_avx512.cpp.
#pragma once
#include <immintrin.h>
#include <cstddef>
#include <cstdint>

namespace {
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
  static float hsum(reg a) { return _mm512_reduce_add_ps(a); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  // bit i set where a[i] <= b[i]
  static unsigned mask_le(reg a, reg b) { return static_cast<unsigned>(_mm512_cmp_ps_mask(a, b, _CMP_LE_OQ)); }
  // exp(x) for x in [-87.3, 88.3] (clamped), Cephes polynomial, about 2 ulp.
  static reg exp(reg x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3365f)), _mm512_set1_ps(88.3762f));
    const reg fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    reg y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, fx);
  }
  static constexpr size_t kR = 12;
  // log(x) for positive normal x (Cephes polynomial on the mantissa in [sqrt(1/2), sqrt(2))).
  static reg log(reg x) {
    reg m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    reg e = _mm512_getexp_ps(x);
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
  static reg sqrt(reg x) { return _mm512_sqrt_ps(x); }
  static reg abs(reg x) { return _mm512_abs_ps(x); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  // v where x >= t, else exactly 0.
  static reg keep_ge(reg v, reg x, reg t) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, t, _CMP_GE_OQ), v); }
  // p[0..W) += v, in double.
  static void add_to_double(double* p, reg v) {
    _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(p), _mm512_cvtps_pd(_mm512_castps512_ps256(v))));
    _mm512_storeu_pd(p + 8, _mm512_add_pd(_mm512_loadu_pd(p + 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1))));
  }
};
}  // namespace
