// One-lane "vector" used by the portable scalar path. Every SIMD header defines a
// struct V with the same static interface so kernels_impl.hpp is written once.
#pragma once
#include <cstddef>

namespace {
struct V {
  using reg = float;
  static constexpr size_t W = 1;
  static constexpr const char* name = "scalar";
  static reg zero() { return 0.0f; }
  static reg set1(float x) { return x; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg v) { *p = v; }
  static reg load_tail(const float* p, size_t) { return *p; }
  static void store_tail(float* p, reg v, size_t) { *p = v; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul(reg a, reg b) { return a * b; }
  // a*b + c; the scalar path is not forced to fuse.
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static float hsum(reg a) { return a; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  // bit i set where a[i] <= b[i]
  static unsigned mask_le(reg a, reg b) { return a <= b ? 1u : 0u; }
  static reg exp(reg x) { return __builtin_expf(x); }
  // Queries per block are 2 * W; kR references per micro-tile of the estimator GEMMs.
  static constexpr size_t kR = 4;
  static reg log(reg x) { return __builtin_logf(x); }
  static reg sqrt(reg x) { return __builtin_sqrtf(x); }
  static reg abs(reg x) { return __builtin_fabsf(x); }
  static reg div(reg a, reg b) { return a / b; }
  static reg min(reg a, reg b) { return a < b ? a : b; }
  // v where x >= t, else exactly 0.
  static reg keep_ge(reg v, reg x, reg t) { return x >= t ? v : 0.0f; }
  // p[0..W) += v, in double.
  static void add_to_double(double* p, reg v) { p[0] += static_cast<double>(v); }
};
}  // namespace
