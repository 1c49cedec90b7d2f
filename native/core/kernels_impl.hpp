// The kernels, written once against the vector interface V (see simd/). This file is
// included by exactly one translation unit per instruction set, after the header that
// defines V. Everything here has internal linkage, so the copies compiled with different
// instruction-set flags can never be merged by the linker.
//
// Rule for this file: no standard-library calls (they are inline functions with external
// linkage and could be emitted with the wrong instruction set); only V, builtins and
// plain arithmetic.
#pragma once
#include <cstddef>

#include "kernels.hpp"

namespace {

void k_combine(float* out, const float* u, const float* w, size_t n, float c, float p, float q) {
  const typename V::reg vc = V::set1(c), vp = V::set1(p), vq = V::set1(q);
  size_t i = 0;
  for (; i + 2 * V::W <= n; i += 2 * V::W) {
    typename V::reg a0 = V::mul(vc, V::fma(vq, V::load(w + i), V::mul(vp, V::load(u + i))));
    typename V::reg a1 =
        V::mul(vc, V::fma(vq, V::load(w + i + V::W), V::mul(vp, V::load(u + i + V::W))));
    V::store(out + i, a0);
    V::store(out + i + V::W, a1);
  }
  for (; i + V::W <= n; i += V::W) {
    V::store(out + i, V::mul(vc, V::fma(vq, V::load(w + i), V::mul(vp, V::load(u + i)))));
  }
  if (i < n) {
    const size_t r = n - i;
    V::store_tail(out + i,
                  V::mul(vc, V::fma(vq, V::load_tail(w + i, r), V::mul(vp, V::load_tail(u + i, r)))),
                  r);
  }
}

// Squared differences in float vector blocks of kBlock elements, each block's total added
// into a double, so the rounding error does not grow with n.
double k_sqdiff(const float* a, const float* b, size_t n, float gscale, float* grad) {
  constexpr size_t kBlock = 256;
  const typename V::reg vg = V::set1(gscale);
  double total = 0.0;
  size_t i = 0;
  while (i < n) {
    const size_t end = (n - i > kBlock) ? i + kBlock : n;
    typename V::reg acc0 = V::zero(), acc1 = V::zero();
    for (; i + 2 * V::W <= end; i += 2 * V::W) {
      typename V::reg d0 = V::sub(V::load(a + i), V::load(b + i));
      typename V::reg d1 = V::sub(V::load(a + i + V::W), V::load(b + i + V::W));
      acc0 = V::fma(d0, d0, acc0);
      acc1 = V::fma(d1, d1, acc1);
      if (grad) {
        V::store(grad + i, V::mul(vg, d0));
        V::store(grad + i + V::W, V::mul(vg, d1));
      }
    }
    for (; i + V::W <= end; i += V::W) {
      typename V::reg d0 = V::sub(V::load(a + i), V::load(b + i));
      acc0 = V::fma(d0, d0, acc0);
      if (grad) V::store(grad + i, V::mul(vg, d0));
    }
    if (i < end) {
      const size_t r = end - i;
      typename V::reg d0 = V::sub(V::load_tail(a + i, r), V::load_tail(b + i, r));
      acc1 = V::fma(d0, d0, acc1);
      if (grad) V::store_tail(grad + i, V::mul(vg, d0), r);
      i = end;
    }
    total += static_cast<double>(V::hsum(V::add(acc0, acc1)));
  }
  return total;
}

const sf::KernelTable kTable = {V::name, k_combine, k_sqdiff};

}  // namespace
