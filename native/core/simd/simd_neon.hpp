// NEON, 4 lanes (AArch64 baseline; no extra compiler flags needed).
#pragma once
#include <arm_neon.h>
#include <cstddef>

namespace {
struct V {
  using reg = float32x4_t;
  static constexpr size_t W = 4;
  static constexpr const char* name = "neon";
  static reg zero() { return vdupq_n_f32(0.0f); }
  static reg set1(float x) { return vdupq_n_f32(x); }
  static reg load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, reg v) { vst1q_f32(p, v); }
  static reg load_tail(const float* p, size_t n) {
    float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (size_t i = 0; i < n; ++i) buf[i] = p[i];
    return vld1q_f32(buf);
  }
  static void store_tail(float* p, reg v, size_t n) {
    float buf[4];
    vst1q_f32(buf, v);
    for (size_t i = 0; i < n; ++i) p[i] = buf[i];
  }
  static reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static reg sub(reg a, reg b) { return vsubq_f32(a, b); }
  static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
  static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
  static float hsum(reg a) { return vaddvq_f32(a); }
  static reg max(reg a, reg b) { return vmaxq_f32(a, b); }
  // bit i set where a[i] <= b[i]
  static unsigned mask_le(reg a, reg b) {
    static const uint32_t kBits[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(vcleq_f32(a, b), vld1q_u32(kBits)));
  }
  // exp(x) for x in [-87.3, 88.3] (clamped), Cephes polynomial, about 2 ulp.
  static reg exp(reg x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3365f)), vdupq_n_f32(88.3762f));
    const reg fx = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    x = vfmsq_f32(x, fx, vdupq_n_f32(0.693359375f));
    x = vfmsq_f32(x, fx, vdupq_n_f32(-2.12194440e-4f));
    reg y = vdupq_n_f32(1.9875691500E-4f);
    y = vfmaq_f32(vdupq_n_f32(1.3981999507E-3f), y, x);
    y = vfmaq_f32(vdupq_n_f32(8.3334519073E-3f), y, x);
    y = vfmaq_f32(vdupq_n_f32(4.1665795894E-2f), y, x);
    y = vfmaq_f32(vdupq_n_f32(1.6666665459E-1f), y, x);
    y = vfmaq_f32(vdupq_n_f32(5.0000001201E-1f), y, x);
    y = vfmaq_f32(vaddq_f32(x, vdupq_n_f32(1.0f)), y, vmulq_f32(x, x));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(fx), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
  }
  static constexpr size_t kR = 12;
  // log(x) for positive normal x (Cephes polynomial on the mantissa in [sqrt(1/2), sqrt(2))).
  static reg log(reg x) {
    const int32x4_t bits = vreinterpretq_s32_f32(x);
    reg e = vcvtq_f32_s32(vsubq_s32(vshrq_n_s32(bits, 23), vdupq_n_s32(127)));
    reg m = vreinterpretq_f32_s32(vorrq_s32(vandq_s32(bits, vdupq_n_s32(0x007fffff)), vdupq_n_s32(0x3f800000)));
    const uint32x4_t big = vcgtq_f32(m, vdupq_n_f32(1.41421356237f));
    m = vbslq_f32(big, vmulq_f32(m, vdupq_n_f32(0.5f)), m);
    e = vbslq_f32(big, vaddq_f32(e, vdupq_n_f32(1.0f)), e);
    const reg xx = vsubq_f32(m, vdupq_n_f32(1.0f));
    const reg z = vmulq_f32(xx, xx);
    reg y = vdupq_n_f32(7.0376836292E-2f);
    y = vfmaq_f32(vdupq_n_f32(-1.1514610310E-1f), y, xx);
    y = vfmaq_f32(vdupq_n_f32(1.1676998740E-1f), y, xx);
    y = vfmaq_f32(vdupq_n_f32(-1.2420140846E-1f), y, xx);
    y = vfmaq_f32(vdupq_n_f32(1.4249322787E-1f), y, xx);
    y = vfmaq_f32(vdupq_n_f32(-1.6668057665E-1f), y, xx);
    y = vfmaq_f32(vdupq_n_f32(2.0000714765E-1f), y, xx);
    y = vfmaq_f32(vdupq_n_f32(-2.4999993993E-1f), y, xx);
    y = vfmaq_f32(vdupq_n_f32(3.3333331174E-1f), y, xx);
    y = vmulq_f32(vmulq_f32(y, xx), z);
    y = vfmaq_f32(y, e, vdupq_n_f32(-2.12194440e-4f));
    y = vfmsq_f32(y, vdupq_n_f32(0.5f), z);
    return vfmaq_f32(vaddq_f32(xx, y), e, vdupq_n_f32(0.693359375f));
  }
  static reg sqrt(reg x) { return vsqrtq_f32(x); }
  static reg abs(reg x) { return vabsq_f32(x); }
  static reg div(reg a, reg b) { return vdivq_f32(a, b); }
  static reg min(reg a, reg b) { return vminq_f32(a, b); }
  // v where x >= t, else exactly 0.
  static reg keep_ge(reg v, reg x, reg t) { return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), vcgeq_f32(x, t))); }
  // p[0..W) += v, in double.
  static void add_to_double(double* p, reg v) {
    vst1q_f64(p, vaddq_f64(vld1q_f64(p), vcvt_f64_f32(vget_low_f32(v))));
    vst1q_f64(p + 2, vaddq_f64(vld1q_f64(p + 2), vcvt_high_f64_f32(v)));
  }
};
}  // namespace
