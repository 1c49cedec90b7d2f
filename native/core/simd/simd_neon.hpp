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
};
}  // namespace
