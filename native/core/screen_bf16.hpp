// The bf16 screen of the fused pass (docs/numerics.md, "The bf16 screen"): before a tile's
// float32 dot products, the same products in bfloat16 (AVX512_BF16, twice the FP32 FMA rate)
// with a rigorous bound of their distance from the float32 ones; rows whose weight is then
// certain to be flushed to exactly 0 for every query of the block skip the float32 GEMM.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <cstring>

namespace sf {

// Round-to-nearest-even float -> bfloat16 (the upper 16 bits), in software so the values
// are the same on every machine; |v| < 2^-100 becomes 0, so no subnormal ever reaches the
// hardware (whose bf16 arithmetic treats them as 0). Finite input only.
inline uint16_t to_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) < 0x0d800000u) return static_cast<uint16_t>((u >> 16) & 0x8000u);  // |v| < 2^-100: signed 0
  u += 0x7fffu + ((u >> 16) & 1u);  // to nearest, ties to even (finite v: no carry past the largest exponent)
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

// to_bf16(v), adding bf16(v)^2 to value_sq and (v - bf16(v))^2 to error_sq (in double): the
// two norms the screen's bound needs, of the set's rows and of the queries' lanes alike.
inline uint16_t to_bf16_acc(float v, double& value_sq, double& error_sq) {
  const uint16_t b = to_bf16(v);
  const double bv = from_bf16(b), e = static_cast<double>(v) - bv;
  value_sq += bv * bv;
  error_sq += e * e;
  return b;
}

// sqrt(sum_sq) as a float never below it.
inline float norm_up(double sum_sq) {
  const double n = std::sqrt(sum_sq) * (1 + 1e-12);
  const float f = static_cast<float>(n);
  return static_cast<double>(f) >= n ? f : std::nextafter(f, 3.0e38f);
}

// Whether this build and CPU can run the screen (x86-64 with AVX512_BF16, OS support
// included), and the kernel:
//   S[(j - j0) * 32 + q] = sum_t XTb[t][q] . Ybp[row j][t], j0 <= j < j0 + nt,
// a sum of bf16 products in float over t < dp / 2 coordinate pairs, with the queries' pairs
// XTb[(t * 32 + q) * 2 + i] (coordinate 2 t + i) and the set's bf16 panels (kPanelRows rows,
// row r's pair t at Ybp[p * kPanelRows * dp + t * 2 kPanelRows + 2 r + i]).
using DotBf16Fn = void (*)(const uint16_t* XTb, const uint16_t* Ybp, size_t j0, size_t nt, size_t dp, float* S);
DotBf16Fn dot_bf16_kernel();  // nullptr when unavailable

}  // namespace sf
