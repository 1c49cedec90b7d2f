// The kernels, written once against the vector interface V (see simd/). This file is
// included by exactly one translation unit per instruction set, after the header that
// defines V. Everything here has internal linkage, so the copies compiled with different
// instruction-set flags can never be merged by the linker.
//
// Rule for this file: no standard-library calls (they are inline functions with external
// linkage and could be emitted with the wrong instruction set); only V, builtins and
// plain arithmetic.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "finite.hpp"
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

void k_combine4(float* out, const float* u0, const float* u1, const float* u2, const float* u3, size_t n, float c0,
                float c1, float c2, float c3) {
  const typename V::reg v0 = V::set1(c0), v1 = V::set1(c1), v2 = V::set1(c2), v3 = V::set1(c3);
  size_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    typename V::reg a = V::mul(v0, V::load(u0 + i));
    a = V::fma(v1, V::load(u1 + i), a);
    a = V::fma(v2, V::load(u2 + i), a);
    V::store(out + i, V::fma(v3, V::load(u3 + i), a));
  }
  if (i < n) {
    const size_t r = n - i;
    typename V::reg a = V::mul(v0, V::load_tail(u0 + i, r));
    a = V::fma(v1, V::load_tail(u1 + i, r), a);
    a = V::fma(v2, V::load_tail(u2 + i, r), a);
    V::store_tail(out + i, V::fma(v3, V::load_tail(u3 + i, r), a), r);
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

// ---------------------------------------------------------------------------------------
// Estimator kernels. QB = 2 * W queries per block; R = V::kR references per micro-tile.

constexpr size_t W = V::W;
constexpr size_t QB = 2 * V::W;
constexpr size_t R = V::kR;

// Adds the first n of the W floats of v into p[0..n) (double).
inline void add_to_double(double* p, typename V::reg v, size_t n) {
  if (n == W) {
    V::add_to_double(p, v);
    return;
  }
  float tmp[W];
  V::store(tmp, v);
  for (size_t i = 0; i < n; ++i) p[i] += static_cast<double>(tmp[i]);
}

// s[r][q] (+)= sum_{k < kc} XT[k * QB + q] * y[r][k] for r < RR: RR rows from anywhere, their
// products to anywhere (the row-major tile of dot_lanes, the listed rows of dot_listed), each
// pair's FMAs in k order. Every loop over r is unrolled before GCC's scalar replacement runs, so
// the 2 RR accumulators live in registers: left as loops, they were kept on the stack (zeroed
// with rep stos, reloaded and stored around the k loop), which cost 40% of the time at the
// pruned pass's small kc.
template <size_t RR>
__attribute__((always_inline)) inline void dot_block(const float* XT, const float* const* y, float* const* s, size_t kc,
                                                     bool accumulate) {
  typename V::reg a0[RR], a1[RR];
  if (accumulate) {
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      a0[r] = V::load(s[r]);
      a1[r] = V::load(s[r] + W);
    }
  } else {
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      a0[r] = V::zero();
      a1[r] = V::zero();
    }
  }
  for (size_t k = 0; k < kc; ++k) {
    const typename V::reg x0 = V::load(XT + k * QB), x1 = V::load(XT + k * QB + W);
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      const typename V::reg b = V::set1(y[r][k]);
      a0[r] = V::fma(x0, b, a0[r]);
      a1[r] = V::fma(x1, b, a1[r]);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    V::store(s[r], a0[r]);
    V::store(s[r] + W, a1[r]);
  }
}

// S[r * QB + q] (+)= sum_{k < kc} XT[k * QB + q] * Y[r * ystride + k] for r < RR.
template <size_t RR>
void dot_lanes_block(const float* XT, const float* Y, size_t kc, size_t ystride, float* S, bool accumulate) {
  const float* y[RR];
  float* s[RR];
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    y[r] = Y + r * ystride;
    s[r] = S + r * QB;
  }
  dot_block<RR>(XT, y, s, kc, accumulate);
}

template <size_t N>
struct Unroll {
  template <class F>
  static void dispatch(size_t n, F&& f) {
    if (n == N) {
      f(std::integral_constant<size_t, N>{});
    } else {
      Unroll<N - 1>::dispatch(n, f);
    }
  }
};
template <>
struct Unroll<0> {
  template <class F>
  static void dispatch(size_t, F&&) {}
};

// Blocked over k so that the slice of XT in use (kKC x QB floats) stays in L1 while every
// reference of the tile passes by.
void k_dot_lanes(const float* XT, const float* Y, size_t nt, size_t d, float* S) {
  constexpr size_t kKC = 256;
  for (size_t k0 = 0; k0 < d; k0 += kKC) {
    const size_t kc = d - k0 < kKC ? d - k0 : kKC;
    const bool acc = k0 > 0;
    size_t j = 0;
    for (; j + R <= nt; j += R) dot_lanes_block<R>(XT + k0 * QB, Y + j * d + k0, kc, d, S + j * QB, acc);
    if (j < nt) {
      Unroll<R>::dispatch(nt - j, [&](auto rr) {
        dot_lanes_block<decltype(rr)::value>(XT + k0 * QB, Y + j * d + k0, kc, d, S + j * QB, acc);
      });
    }
  }
}

// dot_lanes_block for RR listed rows: row rows[r] at Y + rows[r] * d + k0, its products to
// S + rows[r] * QB.
template <size_t RR>
void dot_listed_block(const float* XT, const float* Y, const uint32_t* rows, size_t k0, size_t kc, size_t d, float* S,
                      bool accumulate) {
  const float* y[RR];
  float* s[RR];
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    y[r] = Y + rows[r] * d + k0;
    s[r] = S + rows[r] * QB;
  }
  dot_block<RR>(XT, y, s, kc, accumulate);
}

void k_dot_listed(const float* XT, const float* Y, const uint32_t* rows, size_t n, size_t d, float* S) {
  constexpr size_t kKC = 256;
  for (size_t k0 = 0; k0 < d; k0 += kKC) {
    const size_t kc = d - k0 < kKC ? d - k0 : kKC;
    const bool acc = k0 > 0;
    size_t i = 0;
    for (; i + R <= n; i += R) dot_listed_block<R>(XT + k0 * QB, Y, rows + i, k0, kc, d, S, acc);
    if (i < n) {
      Unroll<R>::dispatch(n - i, [&](auto rr) {
        dot_listed_block<decltype(rr)::value>(XT + k0 * QB, Y, rows + i, k0, kc, d, S, acc);
      });
    }
  }
}

// AccT[k * QB + q] += sum over rows of P[j * QB + q] * Y[j * d + k] for KK coordinates; the
// rows are all nt of the tile, or (rows != nullptr) the nt listed ones.
template <size_t KK>
void acc_lanes_block(double* AccT, const float* P, const float* Y, size_t nt, size_t d, const uint32_t* rows) {
  typename V::reg c0[KK], c1[KK];
#pragma GCC unroll 16
  for (size_t k = 0; k < KK; ++k) {
    c0[k] = V::zero();
    c1[k] = V::zero();
  }
  for (size_t i = 0; i < nt; ++i) {
    const size_t j = rows ? rows[i] : i;
    const typename V::reg p0 = V::load(P + j * QB), p1 = V::load(P + j * QB + W);
    const float* y = Y + j * d;
#pragma GCC unroll 16
    for (size_t k = 0; k < KK; ++k) {
      const typename V::reg b = V::set1(y[k]);
      c0[k] = V::fma(p0, b, c0[k]);
      c1[k] = V::fma(p1, b, c1[k]);
    }
  }
#pragma GCC unroll 16
  for (size_t k = 0; k < KK; ++k) {
    add_to_double(AccT + k * QB, c0[k], W);
    add_to_double(AccT + k * QB + W, c1[k], W);
  }
}

// The second GEMM skips the rows whose weights are all exactly zero (flushed below e^-floor of
// the reference, see flushed_exp): at moderate sigma most rows of a tile carry no weight for
// any query of the block.
constexpr size_t kMaxTileRows = 1024;

// rows[0..m) = the rows j < nt (<= kMaxTileRows) with a nonzero weight for some lane; returns m.
// Per half of the block's lanes also half[h][0..m[h]) = the rows whose weights in lanes
// [h W, (h + 1) W) are not all zero.
inline size_t weighted_halves(const float* P, size_t nt, uint32_t* rows, uint32_t* half0, uint32_t* half1, size_t* m) {
  const typename V::reg zero = V::zero();
  const unsigned all = static_cast<unsigned>((uint64_t{1} << W) - 1u);
  size_t m0 = 0, m1 = 0, any = 0;
  for (size_t j = 0; j < nt; ++j) {
    const bool w0 = V::mask_le(V::load(P + j * QB), zero) != all, w1 = V::mask_le(V::load(P + j * QB + W), zero) != all;
    rows[any] = half0[m0] = half1[m1] = static_cast<uint32_t>(j);
    m0 += w0;
    m1 += w1;
    any += w0 || w1;
  }
  m[0] = m0;
  m[1] = m1;
  return any;
}

// AccT[k * QB + q] += sum over the listed rows of P[j * QB + q] * Y[j * d + k] for the W lanes
// of one half (AccT and P offset to it) and KK coordinates. Lane q's sums get the same FMAs in
// the same order as in acc_lanes_block: the rows this skips carry exact zeros in q's half,
// whose products leave a float sum unchanged. One accumulator per coordinate, so twice the
// coordinates per pass over the rows.
template <size_t KK>
void acc_half_block(double* AccT, const float* P, const float* Y, size_t d, const uint32_t* rows, size_t n) {
  typename V::reg c[KK];  // the loops over k unrolled, so that c lives in registers (as in dot_lanes_block)
#pragma GCC unroll 32
  for (size_t k = 0; k < KK; ++k) c[k] = V::zero();
  for (size_t i = 0; i < n; ++i) {
    const size_t j = rows[i];
    const typename V::reg p = V::load(P + j * QB);
    const float* y = Y + j * d;
#pragma GCC unroll 32
    for (size_t k = 0; k < KK; ++k) c[k] = V::fma(p, V::set1(y[k]), c[k]);
  }
#pragma GCC unroll 32
  for (size_t k = 0; k < KK; ++k) add_to_double(AccT + k * QB, c[k], W);
}

// acc_lanes_block over every coordinate: the n listed rows (rows != nullptr) or rows 0..n-1.
inline void acc_lanes_coords(double* AccT, const float* P, const float* Y, size_t n, size_t d, const uint32_t* rows) {
  size_t k = 0;
  for (; k + R <= d; k += R) acc_lanes_block<R>(AccT + k * QB, P, Y + k, n, d, rows);
  if (k < d) {
    Unroll<R>::dispatch(d - k, [&](auto kk) { acc_lanes_block<decltype(kk)::value>(AccT + k * QB, P, Y + k, n, d, rows); });
  }
}

// The sparse second GEMM over the m weighted rows (weighted_halves' lists), read from the
// row-major rows: each half of the lanes over its own rows when that saves FMAs (with few
// weighted pairs a listed row mostly has weight in one half only, and the other half's FMAs
// would add zeros), both halves together when more than half the rows are listed in both
// (each half's pass streams its rows from memory again: measured on MNIST, B = 256, at sigma
// 2, where 98% of the rows are listed in both, halves were 5-14% slower).
inline void acc_sparse(double* AccT, const float* P, const float* Y, size_t d, const uint32_t* rows, size_t m,
                       const uint32_t* const* half, const size_t* mh) {
  if (2 * (mh[0] + mh[1]) > 3 * m) {
    acc_lanes_coords(AccT, P, Y, m, d, rows);
    return;
  }
  constexpr size_t K2 = 2 * R;
  for (size_t h = 0; h < 2; ++h) {
    if (mh[h] == 0) continue;
    size_t k = 0;
    for (; k + K2 <= d; k += K2) acc_half_block<K2>(AccT + k * QB + h * W, P + h * W, Y + k, d, half[h], mh[h]);
    if (k < d) {
      Unroll<K2>::dispatch(d - k, [&](auto kk) {
        acc_half_block<decltype(kk)::value>(AccT + k * QB + h * W, P + h * W, Y + k, d, half[h], mh[h]);
      });
    }
  }
}

void k_acc_lanes(double* AccT, const float* P, const float* Y, size_t nt, size_t d) {
  if (nt <= kMaxTileRows) {
    uint32_t rows[kMaxTileRows], h0[kMaxTileRows], h1[kMaxTileRows];
    const uint32_t* half[2] = {h0, h1};
    size_t mh[2];
    const size_t m = weighted_halves(P, nt, rows, h0, h1, mh);
    if (m == 0) return;
    if (m < nt) {
      acc_sparse(AccT, P, Y, d, rows, m, half, mh);
      return;
    }
  }
  acc_lanes_coords(AccT, P, Y, nt, d, nullptr);
}

// ---- The same two GEMMs over the set's row panels (kernels.hpp, kPanelRows): a panel holds
// kPanelRows consecutive rows interleaved by coordinate, Yp[(j / 12) * 12 d + k * 12 + j % 12],
// so a micro-tile's broadcasts come from one sequential stream instead of R rows d floats
// apart, and the second GEMM's row of KK coordinates from a few cache lines shared with the
// panel's other rows. Every pair gets the same FMAs in the same order as on the row layout,
// so the results are bit-identical to dot_lanes / acc_lanes.
constexpr size_t PR = sf::kPanelRows;

// Where row j's coordinate 0 lives; coordinate k is PR floats further on per k.
inline const float* panel_row(const float* Yp, size_t j, size_t d) { return Yp + (j / PR) * PR * d + j % PR; }

// As dot_lanes_block, rows RR <= PR of one panel, y[r] at Yp[k * PR + r].
template <size_t RR>
void dot_panel_block(const float* XT, const float* Yp, size_t kc, float* S, bool accumulate) {
  typename V::reg a0[RR], a1[RR];
  if (accumulate) {
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      a0[r] = V::load(S + r * QB);
      a1[r] = V::load(S + r * QB + W);
    }
  } else {
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      a0[r] = V::zero();
      a1[r] = V::zero();
    }
  }
#pragma GCC unroll 4
  for (size_t k = 0; k < kc; ++k) {
    const typename V::reg x0 = V::load(XT + k * QB), x1 = V::load(XT + k * QB + W);
    const float* y = Yp + k * PR;
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      const typename V::reg b = V::set1(y[r]);
      a0[r] = V::fma(x0, b, a0[r]);
      a1[r] = V::fma(x1, b, a1[r]);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    V::store(S + r * QB, a0[r]);
    V::store(S + r * QB + W, a1[r]);
  }
}

// dot_lanes over rows [j0, j0 + nt) of the panels: micro-tiles of up to R rows that never
// straddle a panel (a tile may start and end inside one).
void k_dot_panels(const float* XT, const float* Yp, size_t j0, size_t nt, size_t d, float* S) {
  constexpr size_t kKC = 256;
  static_assert(R <= PR, "a micro-tile lies inside one panel");
  for (size_t k0 = 0; k0 < d; k0 += kKC) {
    const size_t kc = d - k0 < kKC ? d - k0 : kKC;
    const bool acc = k0 > 0;
    for (size_t j = j0; j < j0 + nt;) {
      const size_t in_panel = PR - j % PR, left = j0 + nt - j;
      size_t rr = in_panel < left ? in_panel : left;
      if (rr > R) rr = R;
      const float* y = panel_row(Yp, j, d) + k0 * PR;
      float* s = S + (j - j0) * QB;
      if (rr == R) {
        dot_panel_block<R>(XT + k0 * QB, y, kc, s, acc);
      } else {
        Unroll<R>::dispatch(rr, [&](auto r) { dot_panel_block<decltype(r)::value>(XT + k0 * QB, y, kc, s, acc); });
      }
      j += rr;
    }
  }
}

// As acc_lanes_block, row i's coordinates at rowp[i][k * PR].
template <size_t KK>
void acc_panel_block(double* AccT, const float* P, const float* const* rowp, const uint32_t* rows, size_t n) {
  typename V::reg c0[KK], c1[KK];
#pragma GCC unroll 16
  for (size_t k = 0; k < KK; ++k) {
    c0[k] = V::zero();
    c1[k] = V::zero();
  }
#pragma GCC unroll 2
  for (size_t i = 0; i < n; ++i) {
    const size_t j = rows[i];
    const typename V::reg p0 = V::load(P + j * QB), p1 = V::load(P + j * QB + W);
    const float* y = rowp[i];
#pragma GCC unroll 16
    for (size_t k = 0; k < KK; ++k) {
      const typename V::reg b = V::set1(y[k * PR]);
      c0[k] = V::fma(p0, b, c0[k]);
      c1[k] = V::fma(p1, b, c1[k]);
    }
  }
#pragma GCC unroll 16
  for (size_t k = 0; k < KK; ++k) {
    add_to_double(AccT + k * QB, c0[k], W);
    add_to_double(AccT + k * QB + W, c1[k], W);
  }
}

// acc_lanes over rows [j0, j0 + nt), the same rows skipped, reading the panels Yp when most
// rows carry weight and the row-major rows Y (the tile's first row) when few do: a lone row's
// KK coordinates are KK cache lines apart in a panel but one line in a row, while a run of
// rows shares a panel's lines. Tiles longer than kMaxTileRows (the fused pass's are at most
// 512 rows) go in chunks of that many rows, each flushed to double on its own.
void k_acc_panels(double* AccT, const float* P, const float* Y, const float* Yp, size_t j0, size_t nt, size_t d) {
  if (nt > kMaxTileRows) {
    for (size_t c = 0; c < nt; c += kMaxTileRows)
      k_acc_panels(AccT, P + c * QB, Y + c * d, Yp, j0 + c, nt - c < kMaxTileRows ? nt - c : kMaxTileRows, d);
    return;
  }
  uint32_t rows[kMaxTileRows], h0[kMaxTileRows], h1[kMaxTileRows];
  const uint32_t* half[2] = {h0, h1};
  size_t mh[2];
  const size_t m = weighted_halves(P, nt, rows, h0, h1, mh);
  if (m == 0) return;
  if (2 * m < nt) {  // sparse: the rows
    acc_sparse(AccT, P, Y, d, rows, m, half, mh);
    return;
  }
  size_t k = 0;
  const float* rowp[kMaxTileRows];
  for (size_t i = 0; i < m; ++i) rowp[i] = panel_row(Yp, j0 + rows[i], d);
  for (; k + R <= d; k += R) {
    acc_panel_block<R>(AccT + k * QB, P, rowp, rows, m);
    for (size_t i = 0; i < m; ++i) rowp[i] += R * PR;
  }
  if (k < d) {
    Unroll<R>::dispatch(d - k, [&](auto kk) { acc_panel_block<decltype(kk)::value>(AccT + k * QB, P, rowp, rows, m); });
  }
}

// S[(j + r) * QB + q] for QQ queries and 4 references at a time, vectorised along k.
template <size_t QQ>
void dot_rows_block(const float* X, const float* Y, size_t nt, size_t d, float* S) {
  size_t j = 0;
  for (; j < nt; j += 4) {
    const size_t rr = nt - j < 4 ? nt - j : 4;
    typename V::reg acc[QQ][4];
    for (size_t q = 0; q < QQ; ++q)
      for (size_t r = 0; r < 4; ++r) acc[q][r] = V::zero();
    const float* y0 = Y + j * d;
    const float* y1 = Y + (j + (rr > 1 ? 1 : 0)) * d;
    const float* y2 = Y + (j + (rr > 2 ? 2 : 0)) * d;
    const float* y3 = Y + (j + (rr > 3 ? 3 : 0)) * d;
    size_t k = 0;
    for (; k + W <= d; k += W) {
      const typename V::reg b0 = V::load(y0 + k), b1 = V::load(y1 + k), b2 = V::load(y2 + k), b3 = V::load(y3 + k);
      for (size_t q = 0; q < QQ; ++q) {
        const typename V::reg a = V::load(X + q * d + k);
        acc[q][0] = V::fma(a, b0, acc[q][0]);
        acc[q][1] = V::fma(a, b1, acc[q][1]);
        acc[q][2] = V::fma(a, b2, acc[q][2]);
        acc[q][3] = V::fma(a, b3, acc[q][3]);
      }
    }
    if (k < d) {
      const size_t n = d - k;
      const typename V::reg b0 = V::load_tail(y0 + k, n), b1 = V::load_tail(y1 + k, n),
                            b2 = V::load_tail(y2 + k, n), b3 = V::load_tail(y3 + k, n);
      for (size_t q = 0; q < QQ; ++q) {
        const typename V::reg a = V::load_tail(X + q * d + k, n);
        acc[q][0] = V::fma(a, b0, acc[q][0]);
        acc[q][1] = V::fma(a, b1, acc[q][1]);
        acc[q][2] = V::fma(a, b2, acc[q][2]);
        acc[q][3] = V::fma(a, b3, acc[q][3]);
      }
    }
    for (size_t r = 0; r < rr; ++r)
      for (size_t q = 0; q < QQ; ++q) S[(j + r) * QB + q] = V::hsum(acc[q][r]);
  }
}

// Four queries per pass over the tile where the registers allow it (16 accumulators), then
// three, two or one: each pass reads the tile's rows once.
constexpr size_t kRowsQueries = V::W >= 16 ? 4 : 2;

void k_dot_rows(const float* X, size_t nq, const float* Y, size_t nt, size_t d, float* S) {
  size_t q = 0;
  if constexpr (kRowsQueries >= 4)
    for (; q + 4 <= nq; q += 4) dot_rows_block<4>(X + q * d, Y, nt, d, S + q);
  if (kRowsQueries >= 4 && nq - q == 3) {
    dot_rows_block<3>(X + q * d, Y, nt, d, S + q);
    return;
  }
  for (; q + 2 <= nq; q += 2) dot_rows_block<2>(X + q * d, Y, nt, d, S + q);
  if (q < nq) dot_rows_block<1>(X + q * d, Y, nt, d, S + q);
}

// Acc[q * d + k] += sum_j P[j * QB + q] * Y[j * d + k] for QQ queries, 4 vectors of k at a time.
template <size_t QQ>
void acc_rows_block(double* Acc, const float* P, const float* Y, size_t nt, size_t d) {
  constexpr size_t KV = 4;
  for (size_t k0 = 0; k0 < d; k0 += KV * W) {
    typename V::reg c[QQ][KV];
    for (size_t q = 0; q < QQ; ++q)
      for (size_t v = 0; v < KV; ++v) c[q][v] = V::zero();
    const size_t rem = d - k0;
    if (rem >= KV * W) {
      for (size_t j = 0; j < nt; ++j) {
        bool zero = true;
        for (size_t q = 0; q < QQ; ++q) zero = zero && P[j * QB + q] == 0.0f;
        if (zero) continue;  // weights flushed to exactly zero: nothing to add
        const float* y = Y + j * d + k0;
        const typename V::reg b0 = V::load(y), b1 = V::load(y + W), b2 = V::load(y + 2 * W), b3 = V::load(y + 3 * W);
        for (size_t q = 0; q < QQ; ++q) {
          const typename V::reg p = V::set1(P[j * QB + q]);
          c[q][0] = V::fma(p, b0, c[q][0]);
          c[q][1] = V::fma(p, b1, c[q][1]);
          c[q][2] = V::fma(p, b2, c[q][2]);
          c[q][3] = V::fma(p, b3, c[q][3]);
        }
      }
    } else {
      for (size_t j = 0; j < nt; ++j) {
        const float* y = Y + j * d + k0;
        for (size_t v = 0; v * W < rem; ++v) {
          const size_t n = rem - v * W < W ? rem - v * W : W;
          const typename V::reg b = n == W ? V::load(y + v * W) : V::load_tail(y + v * W, n);
          for (size_t q = 0; q < QQ; ++q) c[q][v] = V::fma(V::set1(P[j * QB + q]), b, c[q][v]);
        }
      }
    }
    for (size_t q = 0; q < QQ; ++q)
      for (size_t v = 0; v < KV && v * W < rem; ++v) {
        const size_t n = rem - v * W < W ? rem - v * W : W;
        add_to_double(Acc + q * d + k0 + v * W, c[q][v], n);
      }
  }
}

void k_acc_rows(double* Acc, size_t nq, const float* P, const float* Y, size_t nt, size_t d) {
  size_t q = 0;
  if constexpr (kRowsQueries >= 4)
    for (; q + 4 <= nq; q += 4) acc_rows_block<4>(Acc + q * d, P + q, Y, nt, d);
  if (kRowsQueries >= 4 && nq - q == 3) {
    acc_rows_block<3>(Acc + q * d, P + q, Y, nt, d);
    return;
  }
  for (; q + 2 <= nq; q += 2) acc_rows_block<2>(Acc + q * d, P + q, Y, nt, d);
  if (q < nq) acc_rows_block<1>(Acc + q * d, P + q, Y, nt, d);
}

void k_logits_gauss(float* S, size_t nt, const float* yy, const float* cA, const float* cB, const float* cC,
                    float* lane_max, float* lane_min) {
  const typename V::reg a0 = V::load(cA), a1 = V::load(cA + W), b0 = V::load(cB), b1 = V::load(cB + W);
  const typename V::reg c0 = V::load(cC), c1 = V::load(cC + W);
  typename V::reg m0 = V::set1(-3.0e38f), m1 = m0, n0 = V::set1(3.0e38f), n1 = n0;
  for (size_t j = 0; j < nt; ++j) {
    const typename V::reg y = V::set1(yy[j]);
    float* s = S + j * QB;
    const typename V::reg l0 = V::fma(a0, V::load(s), V::fma(b0, y, c0));
    const typename V::reg l1 = V::fma(a1, V::load(s + W), V::fma(b1, y, c1));
    V::store(s, l0);
    V::store(s + W, l1);
    m0 = V::max(m0, l0);
    m1 = V::max(m1, l1);
    n0 = V::min(n0, l0);
    n1 = V::min(n1, l1);
  }
  if (lane_max) {
    V::store(lane_max, m0);
    V::store(lane_max + W, m1);
  }
  if (lane_min) {
    V::store(lane_min, n0);
    V::store(lane_min + W, n1);
  }
}

// The bf16 screen's bounds (kernels.hpp). |S_float - Sb| <= eb = gm n2 + bn dy + bd n2 (the
// bf16 rounding of the row and of the query, and both GEMMs' float sums; n2 >= ||y||), and the
// two tile forms' roundings are within 4u of the magnitudes involved.
bool k_screen_bounds(const float* Sb, size_t nt, const float* yy, const float* bny, const float* bdy,
                     const sf::ScreenLanes& p, float* negU, float* lane_lo) {
  const typename V::reg u4 = V::set1(4.0f * 0x1p-24f), tiny = V::set1(1e-30f), grow = V::set1(1.0001f);
  typename V::reg nonfinite = V::zero();  // 0 * v: NaN where some v is not finite
  for (size_t h = 0; h < 2; ++h) {
    const size_t o = h * W;
    const typename V::reg cA = V::load(p.cA + o), cB = V::load(p.cB + o), cC = V::load(p.cC + o);
    const typename V::reg aA = V::load(p.absA + o), bn = V::load(p.bn + o), bd = V::load(p.bd + o);
    const typename V::reg gm = V::load(p.gm + o), e = V::load(p.e + o);
    const typename V::reg aB = V::abs(cB), aC = V::abs(cC);
    typename V::reg lo = V::set1(-3.0e38f);
    for (size_t j = 0; j < nt; ++j) {
      const typename V::reg y = V::set1(yy[j]), dy = V::set1(bdy[j]);
      const typename V::reg n2 = V::set1(bny[j] + bdy[j]);
      const typename V::reg eb = V::mul(V::add(V::fma(gm, n2, V::fma(bn, dy, V::mul(bd, n2))), tiny), grow);
      const typename V::reg sb = V::load(Sb + j * QB + o);
      const typename V::reg L = V::fma(cA, sb, V::fma(cB, y, cC));
      const typename V::reg mag = V::add(V::add(V::abs(L), V::mul(aA, V::add(V::abs(sb), eb))), V::fma(aB, y, aC));
      const typename V::reg D = V::add(V::fma(u4, mag, V::mul(aA, eb)), tiny);
      const typename V::reg nu = V::sub(V::zero(), V::add(V::add(L, D), e));
      V::store(negU + j * QB + o, nu);
      lo = V::max(lo, V::sub(L, D));
      nonfinite = V::fma(V::zero(), V::sub(nu, lo), nonfinite);
    }
    V::store(lane_lo + o, lo);
  }
  float f[W];
  V::store(f, nonfinite);
  for (size_t i = 0; i < W; ++i)
    if (f[i] != 0.0f) return false;
  return true;
}

// ---- The lazily moved online-softmax reference, shared by softmax_lanes and fused_small.
constexpr float kSlack = sf::kSoftmaxSlack;

// No subnormals (docs/numerics.md): a weight exp(l - M) below e^-floor of the running
// reference M (floor <= kWeightFloor, chosen per call by the caller) is exactly 0, so every
// weight, its square and its products with the data stay normal floats. M never exceeds the
// running maximum, so a flushed weight is below e^-floor of the top weight, and all flushed
// weights together move a normalised output by less than N e^-floor of the data's spread.
// softmax_lanes also flushes below e^-floor of the running maximum R of the earlier tiles
// (R >= M: the lazy reference lags it by up to kSlack), the same guarantee with fewer weights.
// Rescale factors exp(M_old - M_new) are flushed below e^-kScaleFloor (what they multiply is
// at most N e^16 of the old reference).
constexpr float kWeightFloor = 40.0f;
constexpr float kScaleFloor = 80.0f;

// exp(x) for x >= lo (per lane, lo >= -kScaleFloor), exactly 0 below.
inline typename V::reg flushed_exp_below(typename V::reg x, typename V::reg lo) {
  return V::keep_ge(V::exp(V::max(x, lo)), x, lo);
}
// exp(x) for x >= -floor, exactly 0 below.
inline typename V::reg flushed_exp(typename V::reg x, float floor) { return flushed_exp_below(x, V::set1(-floor)); }

// True when some lane has no reference yet (before its first tile).
inline bool any_unset(typename V::reg ref) {
  float v[W];
  V::store(v, ref);
  for (size_t i = 0; i < W; ++i)
    if (v[i] <= -1e29f) return true;
  return false;
}

// Moves the lanes whose tile maximum exceeds the reference by more than kSlack to that
// maximum; returns whether any moved (then the tile is redone against the new reference).
inline bool move_reference(typename V::reg mx, typename V::reg& ref) {
  float mxv[W], refv[W];
  V::store(mxv, mx);
  V::store(refv, ref);
  bool move = false;
  for (size_t i = 0; i < W; ++i) {
    if (mxv[i] > refv[i] + kSlack) {
      refv[i] = mxv[i];
      move = true;
    }
  }
  if (move) ref = V::load(refv);
  return move;
}

// Stores the new reference, the rescale factor of what was accumulated and the tile sums.
inline void store_softmax_state(size_t o, typename V::reg old, typename V::reg ref, typename V::reg s0,
                                typename V::reg s1, typename V::reg s2, float* M, float* scale, float* sums) {
  V::store(M + o, ref);
  V::store(scale + o, flushed_exp(V::sub(old, ref), kScaleFloor));
  V::store(sums + o, s0);
  V::store(sums + QB + o, s1);
  V::store(sums + 2 * QB + o, s2);
}

// Online-softmax step with a lazily moved reference M: weights are exp(L - M) with M the
// running reference, which only moves (rescaling what was accumulated) when the tile's
// maximum exceeds it by more than kSlack, or on the first tile; then the tile is redone
// from L. One pass over the tile in the common case. With cA set, L holds dot products and
// the Gaussian log-weights cA S + cB yy + cC are formed on the fly (L is not modified).
// R: per lane the largest log-weight of the earlier tiles (kEmpty-like before the first) in
// the frame of L and M; weights below e^-floor of max(M, R) are 0; on return R also counts
// this tile.
template <bool kSq, bool kYy>
void softmax_lanes_t(const float* L, float* P, size_t nt, const float* yy, float* M, float* R, float* scale, float* sums,
                     const float* cA, const float* cB, const float* cC, float floor) {
  const bool fused = cA != nullptr;
  for (size_t h = 0; h < 2; ++h) {
    const size_t o = h * W;
    const typename V::reg old = V::load(M + o);
    typename V::reg a = V::zero(), b = V::zero(), c = V::zero();
    if (fused) {
      a = V::load(cA + o);
      b = V::load(cB + o);
      c = V::load(cC + o);
    }
    auto logit = [&](size_t j) {
      const typename V::reg l = V::load(L + j * QB + o);
      return fused ? V::fma(a, l, V::fma(b, V::set1(yy[j]), c)) : l;
    };
    typename V::reg ref = old;
    if (any_unset(ref)) {  // no reference yet in some lane: the tile's maximum
      typename V::reg mx = old;
      for (size_t j = 0; j < nt; ++j) mx = V::max(mx, logit(j));
      ref = mx;
    }
    const typename V::reg run = V::load(R + o), fl = V::set1(-floor);
    typename V::reg s0, s1, s2, mx;
    for (int attempt = 0; attempt < 2; ++attempt) {
      s0 = V::zero();
      s1 = V::zero();
      s2 = V::zero();
      mx = ref;
      // below e^-floor of max(ref, R): in [-floor, -floor + kSlack] relative to ref
      const typename V::reg lo = V::max(fl, V::add(V::sub(run, ref), fl));
      for (size_t j = 0; j < nt; ++j) {
        const typename V::reg l = logit(j);
        mx = V::max(mx, l);
        const typename V::reg p = flushed_exp_below(V::sub(l, ref), lo);
        V::store(P + j * QB + o, p);
        s0 = V::add(s0, p);
        if (kSq) s1 = V::fma(p, p, s1);
        if (kYy) s2 = V::fma(p, V::set1(yy[j]), s2);
      }
      if (!move_reference(mx, ref)) break;  // else redo the tile against the moved reference
    }
    V::store(R + o, V::max(run, mx));
    store_softmax_state(o, old, ref, s0, s1, s2, M, scale, sums);
  }
}

// flags: bit 0 also sums P^2, bit 1 also sums P * yy (otherwise those sums are 0).
void k_softmax_lanes(const float* L, float* P, size_t nt, const float* yy, float* M, float* R, float* scale, float* sums,
                     const float* cA, const float* cB, const float* cC, unsigned flags, float floor) {
  floor = floor < kWeightFloor ? floor : kWeightFloor;
  switch (flags & 3u) {
    case 0: softmax_lanes_t<false, false>(L, P, nt, yy, M, R, scale, sums, cA, cB, cC, floor); break;
    case 1: softmax_lanes_t<true, false>(L, P, nt, yy, M, R, scale, sums, cA, cB, cC, floor); break;
    case 2: softmax_lanes_t<false, true>(L, P, nt, yy, M, R, scale, sums, cA, cB, cC, floor); break;
    default: softmax_lanes_t<true, true>(L, P, nt, yy, M, R, scale, sums, cA, cB, cC, floor); break;
  }
}

// Everything of one tile in registers for small d (d <= kSmallD): dot products, Gaussian
// log-weights, the lazily re-referenced online softmax (as softmax_lanes) and the weighted
// sums, without storing the tile. XT is d x QB; the tile's weighted sums go to
// tacc[k * QB + q] (float, not yet scaled into any running sum).
constexpr size_t kSmallD = 4;

template <size_t D, bool sq, bool wyy>
void fused_small_t(const float* XT, const float* Y, const float* yy, size_t nt, const float* cA, const float* cB,
                   const float* cC, float* M, float* scale, float* sums, float* tacc, float floor) {
  for (size_t h = 0; h < 2; ++h) {
    const size_t o = h * W;
    typename V::reg x[D];
    for (size_t k = 0; k < D; ++k) x[k] = V::load(XT + k * QB + o);
    const typename V::reg a = V::load(cA + o), b = V::load(cB + o), c = V::load(cC + o);
    auto logit = [&](size_t j) {
      const float* y = Y + j * D;
      typename V::reg dot = V::mul(x[0], V::set1(y[0]));
      for (size_t k = 1; k < D; ++k) dot = V::fma(x[k], V::set1(y[k]), dot);
      return V::fma(a, dot, V::fma(b, V::set1(yy[j]), c));
    };
    const typename V::reg old = V::load(M + o);
    typename V::reg ref = old;
    if (any_unset(ref)) {
      typename V::reg mx = old;
      for (size_t j = 0; j < nt; ++j) mx = V::max(mx, logit(j));
      ref = mx;
    }
    typename V::reg s0, s1, s2, acc[D];
    for (int attempt = 0; attempt < 2; ++attempt) {
      s0 = V::zero();
      s1 = V::zero();
      s2 = V::zero();
      for (size_t k = 0; k < D; ++k) acc[k] = V::zero();
      typename V::reg mx = ref;
      for (size_t j = 0; j < nt; ++j) {
        const typename V::reg l = logit(j);
        mx = V::max(mx, l);
        const typename V::reg p = flushed_exp(V::sub(l, ref), floor);
        s0 = V::add(s0, p);
        if (sq) s1 = V::fma(p, p, s1);
        if (wyy) s2 = V::fma(p, V::set1(yy[j]), s2);
        const float* y = Y + j * D;
        for (size_t k = 0; k < D; ++k) acc[k] = V::fma(p, V::set1(y[k]), acc[k]);
      }
      if (!move_reference(mx, ref)) break;
    }
    store_softmax_state(o, old, ref, s0, s1, s2, M, scale, sums);
    for (size_t k = 0; k < D; ++k) V::store(tacc + k * QB + o, acc[k]);
  }
}

template <size_t D>
void fused_small_d(const float* XT, const float* Y, const float* yy, size_t nt, const float* cA, const float* cB,
                   const float* cC, float* M, float* scale, float* sums, float* tacc, unsigned flags, float floor) {
  switch (flags & 3u) {
    case 0: fused_small_t<D, false, false>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, floor); break;
    case 1: fused_small_t<D, true, false>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, floor); break;
    case 2: fused_small_t<D, false, true>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, floor); break;
    default: fused_small_t<D, true, true>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, floor); break;
  }
}

void k_fused_small(const float* XT, const float* Y, const float* yy, size_t nt, size_t d, const float* cA,
                   const float* cB, const float* cC, float* M, float* scale, float* sums, float* tacc,
                   unsigned flags, float floor) {
  floor = floor < kWeightFloor ? floor : kWeightFloor;
  switch (d) {
    case 1: fused_small_d<1>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, flags, floor); break;
    case 2: fused_small_d<2>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, flags, floor); break;
    case 3: fused_small_d<3>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, flags, floor); break;
    default: fused_small_d<4>(XT, Y, yy, nt, cA, cB, cC, M, scale, sums, tacc, flags, floor); break;
  }
}

void k_nonlinear_tile(float* S, float* E, size_t nt, const float* yy, const float* ny, const float* am,
                      const sf::NonlinearLanes& p, float* lo_out, float* hi_out) {
  typedef typename V::reg R;
  // rounding bounds: 2u for a log and its argument, 4u for the tanh expression, u per product
  const R u1 = V::set1(5.9604644775390625e-08f), u2 = V::set1(2.0f * 5.9604644775390625e-08f);
  const R u4 = V::set1(4.0f * 5.9604644775390625e-08f), zero = V::zero(), half = V::set1(0.5f);
  const R ln2 = V::set1(0.69314718056f), one = V::set1(1.0f), two = V::set1(2.0f);
  for (size_t h = 0; h < 2; ++h) {
    const size_t o = h * W;
    const R xx = V::load(p.xx + o), a = V::load(p.a + o), a2 = V::load(p.a2 + o), s2 = V::load(p.s2 + o);
    const R it = V::load(p.inv_t + o), c = V::load(p.c + o), off = V::load(p.off + o);
    const R eA = V::load(p.eA + o), eG = V::load(p.eG + o), eB = V::load(p.eB + o), eC = V::load(p.eC + o);
    const R m2a = V::mul(V::set1(-2.0f), a), aoff = V::abs(off);
    const R iq = V::load(p.inv_qref + o);
    R lo = V::set1(-3.0e38f), hi = V::set1(-3.0e38f);
    for (size_t j = 0; j < nt; ++j) {
      const R yj = V::set1(yy[j]);
      const R r2 = V::max(zero, V::fma(m2a, V::load(S + j * QB + o), V::fma(a2, yj, xx)));
      const R dr2 = V::fma(eA, V::set1(ny[j]), V::fma(eG, V::set1(am[j]), V::fma(eB, yj, eC)));
      const R r2lo = V::max(zero, V::sub(r2, dr2));
      R l, err;
      if (p.kind == 1) {
        // relative to the offset: l - off = -c log(q / q_ref) with q_ref = exp(-off / c), so the
        // logarithm is near 0 for the top pairs and its rounding does not scale with |log q|
        const R lq = V::log(V::mul(V::add(r2, s2), iq));
        l = V::sub(zero, V::mul(c, lq));
        const R slope = V::div(c, V::add(r2lo, s2));
        err = V::fma(slope, dr2, V::fma(u2, V::mul(c, V::add(V::abs(lq), one)), V::mul(u1, V::abs(l))));
      } else {
        const R r2c = V::max(r2, s2);
        const R uu = V::mul(V::sqrt(r2c), it);
        // tanh: log sech^2 u = -2 (u + log(1 + e^-2u) - ln 2); exp: -u
        const R lf = p.kind == 2 ? V::mul(V::set1(-2.0f), V::sub(V::add(uu, V::log(V::add(one, V::exp(V::max(V::mul(V::set1(-2.0f), uu), V::set1(-80.0f)))))), ln2))
                                 : V::sub(zero, uu);
        // relative to a reference distance: log(r^2 / r2_ref), near 0 for the top pairs
        const R lr = V::log(V::mul(r2c, iq));
        l = V::sub(V::sub(lf, V::mul(V::mul(half, c), lr)), off);
        const R rlo = V::sqrt(V::max(r2lo, s2));
        const R k = p.kind == 2 ? two : one;
        const R slope = V::add(V::div(V::mul(V::mul(half, k), it), rlo), V::div(V::mul(half, c), V::mul(rlo, rlo)));
        err = V::fma(slope, dr2,
                     V::fma(u4, V::abs(lf),
                            V::fma(u2, V::mul(V::mul(half, c), V::add(V::abs(lr), one)), V::mul(u1, V::add(V::abs(l), aoff)))));
      }
      V::store(S + j * QB + o, l);
      V::store(E + j * QB + o, err);
      lo = V::max(lo, V::sub(l, err));
      hi = V::max(hi, l);
    }
    V::store(lo_out + o, lo);
    V::store(hi_out + o, hi);
  }
}

// Direct difference in double of the caller's exact values: sum_k (x_k - a (row_k + c_k))^2,
// where row + c is exact in float by construction of the reference set.
double k_exact_r2(const float* x, const float* row, const float* c, size_t d, double a) {
  size_t k = 0;
  double total = 0.0;
#if defined(__AVX512F__)
  const __m512d va = _mm512_set1_pd(a);
  __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd(), acc2 = _mm512_setzero_pd(), acc3 = _mm512_setzero_pd();
  for (; k + 32 <= d; k += 32) {  // four independent chains (the FMA latency)
    const __m512 y0 = _mm512_add_ps(_mm512_loadu_ps(row + k), _mm512_loadu_ps(c + k));
    const __m512 y1 = _mm512_add_ps(_mm512_loadu_ps(row + k + 16), _mm512_loadu_ps(c + k + 16));
    const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
    const __m512d t0 = _mm512_fnmadd_pd(va, x512::cvt_lo_pd(y0), x512::cvt_lo_pd(x0));
    const __m512d t1 = _mm512_fnmadd_pd(va, x512::cvt_hi_pd(y0), x512::cvt_hi_pd(x0));
    const __m512d t2 = _mm512_fnmadd_pd(va, x512::cvt_lo_pd(y1), x512::cvt_lo_pd(x1));
    const __m512d t3 = _mm512_fnmadd_pd(va, x512::cvt_hi_pd(y1), x512::cvt_hi_pd(x1));
    acc0 = _mm512_fmadd_pd(t0, t0, acc0);
    acc1 = _mm512_fmadd_pd(t1, t1, acc1);
    acc2 = _mm512_fmadd_pd(t2, t2, acc2);
    acc3 = _mm512_fmadd_pd(t3, t3, acc3);
  }
  acc0 = _mm512_add_pd(acc0, acc2);
  acc1 = _mm512_add_pd(acc1, acc3);
  for (; k + 16 <= d; k += 16) {
    const __m512 y = _mm512_add_ps(_mm512_loadu_ps(row + k), _mm512_loadu_ps(c + k));
    const __m512 xv = _mm512_loadu_ps(x + k);
    const __m512d t0 = _mm512_fnmadd_pd(va, x512::cvt_lo_pd(y), x512::cvt_lo_pd(xv));
    const __m512d t1 = _mm512_fnmadd_pd(va, x512::cvt_hi_pd(y), x512::cvt_hi_pd(xv));
    acc0 = _mm512_fmadd_pd(t0, t0, acc0);
    acc1 = _mm512_fmadd_pd(t1, t1, acc1);
  }
  total = x512::reduce_add_pd(_mm512_add_pd(acc0, acc1));
#elif defined(__AVX2__) && defined(__FMA__)
  const __m256d va = _mm256_set1_pd(a);
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  for (; k + 8 <= d; k += 8) {
    const __m256 y = _mm256_add_ps(_mm256_loadu_ps(row + k), _mm256_loadu_ps(c + k));
    const __m256 xv = _mm256_loadu_ps(x + k);
    const __m256d t0 = _mm256_fnmadd_pd(va, _mm256_cvtps_pd(_mm256_castps256_ps128(y)), _mm256_cvtps_pd(_mm256_castps256_ps128(xv)));
    const __m256d t1 = _mm256_fnmadd_pd(va, _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)));
    acc0 = _mm256_fmadd_pd(t0, t0, acc0);
    acc1 = _mm256_fmadd_pd(t1, t1, acc1);
  }
  const __m256d s = _mm256_add_pd(acc0, acc1);
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  total = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#endif
  double a0 = 0, a1 = 0;
  for (; k + 2 <= d; k += 2) {
    const double t0 = x[k] - a * static_cast<double>(row[k] + c[k]);
    const double t1 = x[k + 1] - a * static_cast<double>(row[k + 1] + c[k + 1]);
    a0 += t0 * t0;
    a1 += t1 * t1;
  }
  if (k < d) {
    const double t = x[k] - a * static_cast<double>(row[k] + c[k]);
    a0 += t * t;
  }
  return total + (a0 + a1);
}

// ---- The fused pass's double bookkeeping for recomputed pairs: plain loops that each table's
// compiler flags vectorise (GCC fuses axpy_d's multiply-add where the level has FMA: last-bit
// differences between levels, as in every kernel).

// e[k] += p * y[k] in double.
void k_axpy_d(double* e, double p, const float* y, size_t d) {
  for (size_t k = 0; k < d; ++k) e[k] += p * static_cast<double>(y[k]);
}
// e[k] *= s in double.
void k_scale_d(double* e, double s, size_t n) {
  for (size_t k = 0; k < n; ++k) e[k] *= s;
}
// S[j * qblock + q] = float(S + shift[q]) with the sum in double, j < nt.
void k_shift_lanes(float* S, size_t nt, const double* shift) {
  for (size_t j = 0; j < nt; ++j) {
    float* Sj = S + j * QB;
    for (size_t q = 0; q < QB; ++q) Sj[q] = static_cast<float>(static_cast<double>(Sj[q]) + shift[q]);
  }
}
// Per lane, in double and in row order: s0[q] = sum_j P, s1[q] = sum_j P^2, s2[q] = sum_j P yy[j]
// over P[j * qblock + q], j < nt.
void k_lane_sums_d(const float* P, size_t nt, const float* yy, double* s0, double* s1, double* s2) {
  for (size_t q = 0; q < QB; ++q) s0[q] = s1[q] = s2[q] = 0.0;
  for (size_t j = 0; j < nt; ++j) {
    const float* Pj = P + j * QB;
    const double y = yy[j];
    for (size_t q = 0; q < QB; ++q) {
      const double p = Pj[q];
      s0[q] += p;
      s1[q] += p * p;
      s2[q] += p * y;
    }
  }
}

// ---- Exact pruning (prune.cpp)

// out[v * k + c] = sum_i V[v * d + i] U[i * k + c] for columns c0 <= c < c1, in double: 4 vectors by 32 columns at a
// time in 16 accumulators of 8 doubles (GCC/Clang vector extensions: zmm, 2 ymm or scalar
// pieces per ISA), so each row of U loaded serves 4 vectors and 16 independent chains hide
// the FMA latency.
#if defined(__GNUC__)
typedef double v8d __attribute__((vector_size(64)));

template <size_t NR, size_t NV>  // NR vectors, NV x 8 columns
inline void project_block(const double* V, size_t d, const double* U, size_t k, double* out) {
  v8d a[NR][NV];
  for (size_t r = 0; r < NR; ++r)
    for (size_t t = 0; t < NV; ++t) a[r][t] = v8d{0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < d; ++i) {
    const double* u = U + i * k;
    v8d ut[NV];
    for (size_t t = 0; t < NV; ++t) __builtin_memcpy(&ut[t], u + 8 * t, sizeof(v8d));  // an unaligned load
    for (size_t r = 0; r < NR; ++r) {
      const double vi = V[r * d + i];
      for (size_t t = 0; t < NV; ++t) a[r][t] += vi * ut[t];
    }
  }
  for (size_t r = 0; r < NR; ++r) __builtin_memcpy(out + r * k, a[r], sizeof a[r]);
}
#endif

void k_project(const double* V, size_t nv, size_t d, const double* U, size_t k, size_t c0, size_t c1, double* out) {
  size_t v = 0;
#if defined(__GNUC__)
  for (; v + 4 <= nv; v += 4) {
    size_t c = c0;
    for (; c + 32 <= c1; c += 32) project_block<4, 4>(V + v * d, d, U + c, k, out + v * k + c);
    for (; c + 16 <= c1; c += 16) project_block<4, 2>(V + v * d, d, U + c, k, out + v * k + c);
    for (; c + 8 <= c1; c += 8) project_block<4, 1>(V + v * d, d, U + c, k, out + v * k + c);
    for (; c < c1; ++c)
      for (size_t r = 0; r < 4; ++r) {
        double a = 0.0;
        for (size_t i = 0; i < d; ++i) a += V[(v + r) * d + i] * U[i * k + c];
        out[(v + r) * k + c] = a;
      }
  }
#endif
  for (; v < nv; ++v) {
    size_t c = c0;
#if defined(__GNUC__)
    for (; c + 64 <= c1; c += 64) project_block<1, 8>(V + v * d, d, U + c, k, out + v * k + c);
    for (; c + 48 <= c1; c += 48) project_block<1, 6>(V + v * d, d, U + c, k, out + v * k + c);
    for (; c + 16 <= c1; c += 16) project_block<1, 2>(V + v * d, d, U + c, k, out + v * k + c);
#endif
    for (; c < c1; ++c) {
      double a = 0.0;
      for (size_t i = 0; i < d; ++i) a += V[v * d + i] * U[i * k + c];
      out[v * k + c] = a;
    }
  }
}

// The fused pass's decision which pairs of a tile to recompute precisely, vectorised (the
// caller re-checks the flagged pairs in double): bit q of rowbits[j] is set where the pair's
// modelled error e = eA ny + eG am + eB yy + eC exceeds tol and L + e >= thr[q]. The caller
// passes thresholds rounded down, lanes that cannot qualify with thr = +inf, and e is
// inflated by 1e-3, so the float test keeps every pair the double test would.
bool k_refine_mask(const float* S, size_t nt, const float* ny, const float* am, const float* yy, const float* eA,
                   const float* eG, const float* eB, const float* eC, const float* thr, float tol, uint32_t* rowbits) {
  typedef typename V::reg R;
  const R vtol = V::set1(tol), infl = V::set1(1.001f);
  const R a0 = V::load(eA), a1 = V::load(eA + W), g0 = V::load(eG), g1 = V::load(eG + W);
  const R b0 = V::load(eB), b1 = V::load(eB + W), c0 = V::load(eC), c1 = V::load(eC + W);
  const R t0 = V::load(thr), t1 = V::load(thr + W);
  uint32_t any = 0;
  for (size_t j = 0; j < nt; ++j) {
    const R vny = V::set1(ny[j]), vam = V::set1(am[j]), vyy = V::set1(yy[j]);
    const R e0 = V::mul(infl, V::fma(a0, vny, V::fma(g0, vam, V::fma(b0, vyy, c0))));
    const R e1 = V::mul(infl, V::fma(a1, vny, V::fma(g1, vam, V::fma(b1, vyy, c1))));
    const uint32_t m = (V::mask_le(vtol, e0) & V::mask_le(t0, V::add(V::load(S + j * QB), e0))) |
                       ((V::mask_le(vtol, e1) & V::mask_le(t1, V::add(V::load(S + j * QB + W), e1))) << W);
    rowbits[j] = m;
    any |= m;
  }
  return any != 0;
}

// G[i * k + c] += z[i] * t[c] for i < d, c < k (double; the pruning index's subspace iteration).
void k_rank1(double* G, const double* z, size_t d, const double* t, size_t k) {
  for (size_t i = 0; i < d; ++i) {
    const double zi = z[i];
    if (zi == 0.0) continue;
    double* g = G + i * k;
    size_t c = 0;
#if defined(__GNUC__)
    for (; c + 8 <= k; c += 8) {
      v8d a, tc;
      __builtin_memcpy(&a, g + c, sizeof a);
      __builtin_memcpy(&tc, t + c, sizeof tc);
      a += zi * tc;
      __builtin_memcpy(g + c, &a, sizeof a);
    }
#endif
    for (; c < k; ++c) g[c] += zi * t[c];
  }
}

// For a tile of bounds S (nt x QB): rowbits[j] has bit q set where S[j * QB + q] <= T[q], and
// counts[q] (float, exact below 2^24) is increased by the number of such rows. Returns whether
// any bit was set.
bool k_select_le(const float* S, size_t nt, const float* T, uint32_t* rowbits, float* counts) {
  const typename V::reg t0 = V::load(T), t1 = V::load(T + W), one = V::set1(1.0f);
  typename V::reg c0 = V::load(counts), c1 = V::load(counts + W);
  uint32_t any = 0;
  for (size_t j = 0; j < nt; ++j) {
    const typename V::reg s0 = V::load(S + j * QB), s1 = V::load(S + j * QB + W);
    const uint32_t m = V::mask_le(s0, t0) | (V::mask_le(s1, t1) << W);
    rowbits[j] = m;
    any |= m;
    if (m) {
      c0 = V::add(c0, V::keep_ge(one, t0, s0));
      c1 = V::add(c1, V::keep_ge(one, t1, s1));
    }
  }
  V::store(counts, c0);
  V::store(counts + W, c1);
  return any != 0;
}

void k_refine_bounds(float* S, size_t nt, const uint32_t* rowbits, const float* Xr, const float* A, size_t kp,
                     const float* aa, const float* cA, const float* cB, const float* cC, float* lane_min,
                     uint32_t* lane_arg) {
  for (size_t j = 0; j < nt; ++j) {
    const float* a = A + j * kp;
    for (uint32_t m = rowbits[j]; m; m &= m - 1) {
      const size_t q = static_cast<size_t>(__builtin_ctz(m));
      const float* x = Xr + q * kp;
      typename V::reg acc0 = V::set1(0.0f), acc1 = V::set1(0.0f);
      size_t t = 0;
      for (; t + 2 * W <= kp; t += 2 * W) {
        acc0 = V::fma(V::load(x + t), V::load(a + t), acc0);
        acc1 = V::fma(V::load(x + t + W), V::load(a + t + W), acc1);
      }
      for (; t + W <= kp; t += W) acc0 = V::fma(V::load(x + t), V::load(a + t), acc0);
      float dot = V::hsum(V::add(acc0, acc1));
      for (; t < kp; ++t) dot += x[t] * a[t];
      const float v = cA[q] * dot + (cB[q] * aa[j] + cC[q]);
      float& o = S[j * QB + q];
      if (v > o) o = v;
      if (o < lane_min[q]) {
        lane_min[q] = o;
        lane_arg[q] = static_cast<uint32_t>(j);
      }
    }
  }
}

// The pruned pass's first level in the lanes layout in one pass over the tile: the dot products
// of dot_lanes_block, the transform of logits_gauss and the selection of select_le, with the
// same operations in the same order (so the same bits), without re-reading the tile's bounds.
// The k loop repeats dot_lanes_block's on purpose: calling it and reloading its RR rows of S
// measured 2-5% slower for training digits at sigma <= 0.05.
struct LaneBounds {
  typename V::reg a0, a1, b0, b1, c0, c1, t0, t1, mn0, mn1, n0, n1;
  bool select;
  uint32_t any;
};

template <size_t RR>
void bounds_lanes_block(const float* XT, const float* A, size_t kp, const float* aa, float* S, uint32_t* rowbits,
                        LaneBounds& lb) {
  typename V::reg a0[RR], a1[RR];
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    a0[r] = V::zero();
    a1[r] = V::zero();
  }
  for (size_t k = 0; k < kp; ++k) {
    const typename V::reg x0 = V::load(XT + k * QB), x1 = V::load(XT + k * QB + W);
#pragma GCC unroll 16
    for (size_t r = 0; r < RR; ++r) {
      const typename V::reg b = V::set1(A[r * kp + k]);
      a0[r] = V::fma(x0, b, a0[r]);
      a1[r] = V::fma(x1, b, a1[r]);
    }
  }
  // the running values in locals: the vector types may alias floats, so fields of lb would be
  // reloaded after every store to S
  const typename V::reg one = V::set1(1.0f), ca0 = lb.a0, ca1 = lb.a1, cb0 = lb.b0, cb1 = lb.b1, cc0 = lb.c0, cc1 = lb.c1;
  const typename V::reg t0 = lb.t0, t1 = lb.t1;
  typename V::reg mn0 = lb.mn0, mn1 = lb.mn1, n0 = lb.n0, n1 = lb.n1;
  uint32_t any = 0;
  const bool select = lb.select;
#pragma GCC unroll 16
  for (size_t r = 0; r < RR; ++r) {
    const typename V::reg y = V::set1(aa[r]);
    const typename V::reg l0 = V::fma(ca0, a0[r], V::fma(cb0, y, cc0));
    const typename V::reg l1 = V::fma(ca1, a1[r], V::fma(cb1, y, cc1));
    V::store(S + r * QB, l0);
    V::store(S + r * QB + W, l1);
    mn0 = V::min(mn0, l0);
    mn1 = V::min(mn1, l1);
    if (select) {  // as select_le (which adds the counts only for rows with a bit: the same sums)
      const uint32_t m = V::mask_le(l0, t0) | (V::mask_le(l1, t1) << W);
      rowbits[r] = m;
      any |= m;
      n0 = V::add(n0, V::keep_ge(one, t0, l0));
      n1 = V::add(n1, V::keep_ge(one, t1, l1));
    }
  }
  lb.mn0 = mn0;
  lb.mn1 = mn1;
  lb.n0 = n0;
  lb.n1 = n1;
  lb.any |= any;
}

constexpr size_t kBoundRows = 8;

bool k_bounds_lanes(const float* XT, const float* A, size_t nt, size_t kp, const float* aa, const float* cA, const float* cB,
                    const float* cC, const float* T, float* S, uint32_t* rowbits, float* counts, float* lane_min) {
  LaneBounds lb;
  lb.a0 = V::load(cA);
  lb.a1 = V::load(cA + W);
  lb.b0 = V::load(cB);
  lb.b1 = V::load(cB + W);
  lb.c0 = V::load(cC);
  lb.c1 = V::load(cC + W);
  lb.select = T != nullptr;
  lb.t0 = lb.select ? V::load(T) : V::zero();
  lb.t1 = lb.select ? V::load(T + W) : V::zero();
  lb.n0 = lb.select ? V::load(counts) : V::zero();
  lb.n1 = lb.select ? V::load(counts + W) : V::zero();
  lb.mn0 = V::set1(3.0e38f);
  lb.mn1 = lb.mn0;
  lb.any = 0;
  size_t j = 0;
  for (; j + kBoundRows <= nt; j += kBoundRows)
    bounds_lanes_block<kBoundRows>(XT, A + j * kp, kp, aa + j, S + j * QB, rowbits + j, lb);
  if (j < nt) {
    Unroll<kBoundRows>::dispatch(nt - j, [&](auto rr) {
      bounds_lanes_block<decltype(rr)::value>(XT, A + j * kp, kp, aa + j, S + j * QB, rowbits + j, lb);
    });
  }
  V::store(lane_min, lb.mn0);
  V::store(lane_min + W, lb.mn1);
  if (lb.select) {
    V::store(counts, lb.n0);
    V::store(counts + W, lb.n1);
  }
  return lb.any != 0;
}

// The rows layout's first level for QQ queries (kernels.hpp, bounds_cols), 2 W rows a step:
// 2 QQ accumulators, each At vector loaded once for all QQ. Per element the same operations
// whatever QQ and the step (the sum over t in order, then the affine map), so the same bits.
template <size_t QQ>
void bounds_cols_q(const float* At, size_t stride, size_t nt, size_t kp, const float* const* b, const float* cA,
                   const float* cB, const float* cC, const float* aa, float* const* out, float* lo_out) {
  typedef typename V::reg R;
  R va[QQ], vb[QQ], vc[QQ], lo[QQ];
#pragma GCC unroll 4
  for (size_t q = 0; q < QQ; ++q) {
    va[q] = V::set1(cA[q]);
    vb[q] = V::set1(cB[q]);
    vc[q] = V::set1(cC[q]);
    lo[q] = V::set1(3.0e38f);
  }
  size_t j = 0;
  for (; j + 2 * W <= nt; j += 2 * W) {
    R a0[QQ], a1[QQ];
#pragma GCC unroll 4
    for (size_t q = 0; q < QQ; ++q) a0[q] = a1[q] = V::zero();
    for (size_t t = 0; t < kp; ++t) {
      const float* col = At + t * stride + j;
      const R y0 = V::load(col), y1 = V::load(col + W);
#pragma GCC unroll 4
      for (size_t q = 0; q < QQ; ++q) {
        const R bt = V::set1(b[q][t]);
        a0[q] = V::fma(bt, y0, a0[q]);
        a1[q] = V::fma(bt, y1, a1[q]);
      }
    }
    const R y0 = V::load(aa + j), y1 = V::load(aa + j + W);
#pragma GCC unroll 4
    for (size_t q = 0; q < QQ; ++q) {
      const R l0 = V::fma(va[q], a0[q], V::fma(vb[q], y0, vc[q]));
      const R l1 = V::fma(va[q], a1[q], V::fma(vb[q], y1, vc[q]));
      V::store(out[q] + j, l0);
      V::store(out[q] + j + W, l1);
      lo[q] = V::min(lo[q], V::min(l0, l1));
    }
  }
  for (; j + W <= nt; j += W) {
#pragma GCC unroll 4
    for (size_t q = 0; q < QQ; ++q) {
      R a0 = V::zero();
      for (size_t t = 0; t < kp; ++t) a0 = V::fma(V::set1(b[q][t]), V::load(At + t * stride + j), a0);
      const R l0 = V::fma(va[q], a0, V::fma(vb[q], V::load(aa + j), vc[q]));
      V::store(out[q] + j, l0);
      lo[q] = V::min(lo[q], l0);
    }
  }
  for (size_t q = 0; q < QQ; ++q) {
    float lanes[W];
    V::store(lanes, lo[q]);
    float m = lanes[0];
    for (size_t i = 1; i < W; ++i) m = lanes[i] < m ? lanes[i] : m;
    for (size_t i = j; i < nt; ++i) {  // the tail in scalar, with the same operations
      float a = 0.0f;
      for (size_t t = 0; t < kp; ++t) a = std::fma(b[q][t], At[t * stride + i], a);
      out[q][i] = std::fma(cA[q], a, std::fma(cB[q], aa[i], cC[q]));
      m = out[q][i] < m ? out[q][i] : m;
    }
    lo_out[q] = m;
  }
}

void k_bounds_cols(const float* At, size_t stride, size_t nt, size_t kp, size_t nq, const float* const* b,
                   const float* cA, const float* cB, const float* cC, const float* aa, float* const* out, float* lo) {
  switch (nq) {
    case 1: bounds_cols_q<1>(At, stride, nt, kp, b, cA, cB, cC, aa, out, lo); break;
    case 2: bounds_cols_q<2>(At, stride, nt, kp, b, cA, cB, cC, aa, out, lo); break;
    case 3: bounds_cols_q<3>(At, stride, nt, kp, b, cA, cB, cC, aa, out, lo); break;
    case 4: bounds_cols_q<4>(At, stride, nt, kp, b, cA, cB, cC, aa, out, lo); break;
    default: break;
  }
}

// rowbits[j] |= bit and S[j * stride] = s[j] where s[j] <= T (NaN never), j < nt; returns how
// many.
size_t k_select_col(const float* s, size_t nt, float T, uint32_t bit, uint32_t* rowbits, float* S, size_t stride) {
  const typename V::reg vt = V::set1(T);
  size_t n = 0, j = 0;
  for (; j + W <= nt; j += W)
    for (unsigned m = V::mask_le(V::load(s + j), vt); m; m &= m - 1) {
      const size_t i = j + static_cast<size_t>(__builtin_ctz(m));
      rowbits[i] |= bit;
      S[i * stride] = s[i];
      ++n;
    }
  for (; j < nt; ++j)
    if (s[j] <= T) {
      rowbits[j] |= bit;
      S[j * stride] = s[j];
      ++n;
    }
  return n;
}

float k_fma_loop(size_t iters) {
  typename V::reg a[12];
  for (size_t i = 0; i < 12; ++i) a[i] = V::set1(static_cast<float>(i) * 1e-3f);
  const typename V::reg m = V::set1(0.999999f), c = V::set1(1e-7f);
  for (size_t it = 0; it < iters; ++it)
    for (size_t i = 0; i < 12; ++i) a[i] = V::fma(a[i], m, c);
  typename V::reg s = a[0];
  for (size_t i = 1; i < 12; ++i) s = V::add(s, a[i]);
  return V::hsum(s);
}

void k_exp_inplace(float* v, size_t n) {
  size_t i = 0;
  for (; i + W <= n; i += W) V::store(v + i, V::exp(V::load(v + i)));
  if (i < n) V::store_tail(v + i, V::exp(V::load_tail(v + i, n - i)), n - i);
}

size_t k_first_nonfinite(const float* v, size_t n) { return sf::first_nonfinite(v, n); }
double k_centred_sq(const float* x, const float* c, double alpha, size_t d, double* out) {
  return sf::centred_sq(x, c, alpha, d, out);
}

const sf::KernelTable kTable = {V::name,        k_combine,     k_combine4,      k_sqdiff,        W,          QB,
                                k_dot_lanes,   k_acc_lanes,   k_dot_panels,    k_dot_listed,    k_acc_panels,    k_dot_rows,      k_acc_rows, k_logits_gauss,
                                k_softmax_lanes, k_fused_small, kSmallD,       k_nonlinear_tile,
                                k_exact_r2,      k_first_nonfinite, k_centred_sq,
                                k_project,     k_rank1,         k_select_le,     k_refine_bounds, k_refine_mask,     k_bounds_cols, k_select_col,   k_bounds_lanes,
                                k_screen_bounds, k_axpy_d,        k_scale_d,     k_shift_lanes,   k_lane_sums_d,
                                k_fma_loop,      k_exp_inplace};

}  // namespace
