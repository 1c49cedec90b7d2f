// The table of SIMD kernels. One table is compiled per instruction set (scalar,
// AVX2+FMA, AVX-512, NEON) from the single implementation in kernels_impl.hpp;
// dispatch.cpp picks one at run time.
#pragma once
#include <cstddef>

namespace sf {

struct KernelTable {
  const char* name;
  // out[k] = c * (q * w[k] + p * u[k]); the product q*w is fused with the sum, so
  // x - alpha*x0 style differences are rounded once. out may equal u or w.
  void (*combine)(float* out, const float* u, const float* w, size_t n, float c, float p, float q);
  // Returns sum_k (a[k] - b[k])^2 accumulated in float blocks added into a double.
  // When grad is not null also writes grad[k] = gscale * (a[k] - b[k]); grad may equal a or b.
  double (*sqdiff)(const float* a, const float* b, size_t n, float gscale, float* grad);
};

// Each returns nullptr when its instruction set was not compiled for this architecture.
const KernelTable* kernel_table_scalar();
const KernelTable* kernel_table_avx2();
const KernelTable* kernel_table_avx512();
const KernelTable* kernel_table_neon();

}  // namespace sf
