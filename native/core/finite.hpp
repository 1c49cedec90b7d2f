// Scans of a query that every estimate call makes, written so the compiler vectorises them:
// first_nonfinite (the input check), centred_sq (x - alpha c and its squared norm) and sq_norm.
// They have internal linkage (static) and call no library function: kernels_impl.hpp compiles
// them once per instruction set (KernelTable::first_nonfinite, ::centred_sq), and an inline
// function with external linkage compiled with AVX-512 flags in one file could be the copy the
// linker keeps for every caller.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sf {

// Whether *v is NaN or +-inf: its exponent bits all set (no library call, see above).
static inline bool nonfinite_bits(const float* v) {
  uint32_t u;
  __builtin_memcpy(&u, v, sizeof u);
  return (u & 0x7f800000u) == 0x7f800000u;
}

// The index of the first value that is not finite (NaN or +-inf) in an array, or n: a scan in
// blocks whose test of the exponent bits the compiler vectorises (std::isfinite with an early
// exit per element does not), so checking an input costs a fraction of reading it.
static inline size_t first_nonfinite(const float* v, size_t n) {
  constexpr size_t kBlock = 256;
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t e = b + kBlock < n ? b + kBlock : n;
    uint32_t bad = 0;
    for (size_t i = b; i < e; ++i) bad |= static_cast<uint32_t>(nonfinite_bits(v + i));
    if (bad)
      for (size_t i = b; i < e; ++i)
        if (nonfinite_bits(v + i)) return i;
  }
  return n;
}

// ||x - alpha c||^2 in double over d coordinates, in eight chains (one long dependency chain
// of adds would run at a fraction of the speed; eight independent lanes the compiler turns
// into vector operations); with `out`, also writes x - alpha c into it.
static inline double centred_sq(const float* x, const float* c, double alpha, size_t d, double* out = nullptr) {
  constexpr size_t kChains = 8;
  double s[kChains] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t k = 0;
  if (out) {
    for (; k + kChains <= d; k += kChains)
      for (size_t u = 0; u < kChains; ++u) {
        const double v = static_cast<double>(x[k + u]) - alpha * c[k + u];
        out[k + u] = v;
        s[u] += v * v;
      }
  } else {
    for (; k + kChains <= d; k += kChains)
      for (size_t u = 0; u < kChains; ++u) {
        const double v = static_cast<double>(x[k + u]) - alpha * c[k + u];
        s[u] += v * v;
      }
  }
  for (; k < d; ++k) {
    const double v = static_cast<double>(x[k]) - alpha * c[k];
    if (out) out[k] = v;
    s[0] += v * v;
  }
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// ||y||^2 of a float row in double, in four chains.
static inline double sq_norm(const float* y, size_t d) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  size_t t = 0;
  for (; t + 4 <= d; t += 4) {
    const double v0 = y[t], v1 = y[t + 1], v2 = y[t + 2], v3 = y[t + 3];
    a0 += v0 * v0;
    a1 += v1 * v1;
    a2 += v2 * v2;
    a3 += v3 * v3;
  }
  for (; t < d; ++t) a0 += static_cast<double>(y[t]) * y[t];
  return (a0 + a1) + (a2 + a3);
}

}  // namespace sf
