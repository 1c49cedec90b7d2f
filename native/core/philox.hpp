// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), a
// counter-based generator: the output is a pure function of (key, counter), so the noise
// of sample i depends only on (seed, stream, i) and never on batch size or threads.
#pragma once
#include <cmath>
#include <cstdint>

namespace sf {

struct Philox4x32 {
  uint32_t v[4];
};

inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in the open interval (0, 1) with 53 random bits.
inline double philox_open01(uint32_t hi, uint32_t lo) {
  const uint64_t m = ((static_cast<uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(m) + 0.5) * (1.0 / 9007199254740992.0);
}

// Two standard normal variates from one Philox block (Box-Muller in double precision).
// Counter layout: (pair index within the sample, sample index low, sample index high,
// stream); key: the 64-bit seed.
inline void philox_normal_pair(uint64_t seed, uint32_t stream, uint64_t sample, uint32_t pair,
                               double* z0, double* z1) {
  const Philox4x32 r =
      philox4x32_10(pair, static_cast<uint32_t>(sample), static_cast<uint32_t>(sample >> 32), stream,
                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const double u1 = philox_open01(r.v[0], r.v[1]);
  const double u2 = philox_open01(r.v[2], r.v[3]);
  const double rad = std::sqrt(-2.0 * std::log(u1));
  const double th = 6.283185307179586476925286766559 * u2;
  *z0 = rad * std::cos(th);
  *z1 = rad * std::sin(th);
}

}  // namespace sf
