// The index of the first value that is not finite (NaN or +-inf) in an array, or n: a scan in
// blocks whose test of the exponent bits the compiler vectorises (std::isfinite with an early
// exit per element does not), so checking an input costs a fraction of reading it.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sf {

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

}  // namespace sf
