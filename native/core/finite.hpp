// Scans of a query that every estimate call makes, written so the compiler vectorises them:
// first_nonfinite (the input check) and centred_sq (x - alpha c and its squared norm).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sf {

// The index of the first value that is not finite (NaN or +-inf) in an array, or n: a scan in
// blocks whose test of the exponent bits the compiler vectorises (std::isfinite with an early
// exit per element does not), so checking an input costs a fraction of reading it.
inline size_t first_nonfinite(const float* v, size_t n) {
  constexpr size_t kBlock = 256;
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t e = b + kBlock < n ? b + kBlock : n;
    uint32_t bad = 0;
    for (size_t i = b; i < e; ++i) {
      uint32_t u;
      std::memcpy(&u, v + i, sizeof u);
      bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
    }
    if (bad)
      for (size_t i = b; i < e; ++i)
        if (!std::isfinite(v[i])) return i;
  }
  return n;
}

// ||x - alpha c||^2 in double over d coordinates, in eight chains (one long dependency chain
// of adds would run at a fraction of the speed; eight independent lanes the compiler turns
// into vector operations); with `out`, also writes x - alpha c into it (as T).
template <class T = double>
inline double centred_sq(const float* x, const float* c, double alpha, size_t d, T* out = nullptr) {
  constexpr size_t kChains = 8;
  double s[kChains] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t k = 0;
  if (out) {
    for (; k + kChains <= d; k += kChains)
      for (size_t u = 0; u < kChains; ++u) {
        const double v = static_cast<double>(x[k + u]) - alpha * c[k + u];
        out[k + u] = static_cast<T>(v);
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
    if (out) out[k] = static_cast<T>(v);
    s[0] += v * v;
  }
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace sf
