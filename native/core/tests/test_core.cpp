// The native core's own tests: no Node.js, no framework. Run under ASan+UBSan in CI.
// Prints one line per failure and a final "N passed, N failed" line.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dispatch.hpp"
#include "estimator.hpp"
#include "sample.hpp"
#include "steps.hpp"
#include "errors.hpp"
#include "finite.hpp"
#include "fpenv.hpp"
#include "prune.hpp"
#include "screen_bf16.hpp"
#include "npy.hpp"
#include "philox.hpp"
#include "targets.hpp"
#include "thread_pool.hpp"

namespace {

int g_passed = 0, g_failed = 0;
std::string g_context;

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (cond) {                                                                          \
      ++g_passed;                                                                        \
    } else {                                                                             \
      ++g_failed;                                                                        \
      std::printf("FAIL %s:%d [%s] %s\n", __FILE__, __LINE__, g_context.c_str(), #cond); \
    }                                                                                    \
  } while (0)

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Relative error of a against the float64 reference b, measured against max(|b|, floor).
bool close(const std::vector<float>& a, const std::vector<double>& b, double rtol, double floor = 1e-6) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(err <= rtol * std::max(std::fabs(b[i]), floor))) {
      std::printf("  mismatch at %zu: %.9g vs %.9g\n", i, static_cast<double>(a[i]), b[i]);
      return false;
    }
  }
  return true;
}

// |a - b| <= rtol * mag elementwise, where mag is the size of the terms that were summed
// (a difference of nearly equal terms can only be as exact as the terms).
bool close_mag(const std::vector<float>& a, const std::vector<double>& b, const std::vector<double>& mag,
               double rtol) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(std::fabs(static_cast<double>(a[i]) - b[i]) <= rtol * mag[i] + 1e-30)) {
      std::printf("  mismatch at %zu: %.9g vs %.9g (terms %.3g)\n", i, static_cast<double>(a[i]), b[i], mag[i]);
      return false;
    }
  }
  return a.size() == b.size();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void test_philox_known_answers() {
  g_context = "philox";
  // Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32 10 rounds).
  sf::Philox4x32 z = sf::philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(z.v[0] == 0x6627e8d5u && z.v[1] == 0xe169c58du && z.v[2] == 0xbc57ac4cu && z.v[3] == 0x9b00dbd8u);
  sf::Philox4x32 f = sf::philox4x32_10(~0u, ~0u, ~0u, ~0u, ~0u, ~0u);
  CHECK(f.v[0] == 0x408f276du && f.v[1] == 0x41c83b0eu && f.v[2] == 0xa20bc7c6u && f.v[3] == 0x6d5451fdu);
  sf::Philox4x32 p = sf::philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u,
                                       0xa4093822u, 0x299f31d0u);
  CHECK(p.v[0] == 0xd16cfe09u && p.v[1] == 0x94fdccebu && p.v[2] == 0x5001e420u && p.v[3] == 0x24126ea1u);
}

void test_kernels_every_level() {
  const size_t lengths[] = {0, 1, 2, 7, 15, 16, 17, 31, 33, 1023, 4099};
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    CHECK(sf::simd_level() == level);
    for (size_t n : lengths) {
      g_context = level + " n=" + std::to_string(n);
      std::vector<float> u = random_vec(n, 1 + static_cast<uint32_t>(n));
      std::vector<float> w = random_vec(n, 2 + static_cast<uint32_t>(n));
      const float c = -0.37f, p = 1.25f, q = -0.8f;
      std::vector<double> ref(n), mag(n);
      for (size_t i = 0; i < n; ++i) {
        ref[i] = double(c) * (double(q) * w[i] + double(p) * u[i]);
        mag[i] = std::fabs(double(c)) * (std::fabs(double(q) * w[i]) + std::fabs(double(p) * u[i]));
      }
      // One guard element on each side catches writes past the end.
      std::vector<float> out(n + 2, 12345.0f);
      sf::kernels().combine(out.data() + 1, u.data(), w.data(), n, c, p, q);
      CHECK(out[0] == 12345.0f && out[n + 1] == 12345.0f);
      CHECK(close_mag(std::vector<float>(out.begin() + 1, out.end() - 1), ref, mag, 4e-7));
      // In place: out aliases u.
      std::vector<float> alias = u;
      sf::kernels().combine(alias.data(), alias.data(), w.data(), n, c, p, q);
      CHECK(close_mag(alias, ref, mag, 4e-7));

      double ref_sum = 0.0;
      std::vector<double> ref_grad(n);
      for (size_t i = 0; i < n; ++i) {
        const double dlt = double(u[i]) - double(w[i]);
        ref_sum += dlt * dlt;
        ref_grad[i] = 0.5 * dlt;
      }
      std::vector<float> grad(n + 2, 777.0f);
      const double s = sf::kernels().sqdiff(u.data(), w.data(), n, 0.5f, grad.data() + 1);
      CHECK(std::fabs(s - ref_sum) <= 1e-5 * std::max(1.0, ref_sum));
      CHECK(grad[0] == 777.0f && grad[n + 1] == 777.0f);
      CHECK(close(std::vector<float>(grad.begin() + 1, grad.end() - 1), ref_grad, 1e-6, 1e-3));
      const double s2 = sf::kernels().sqdiff(u.data(), w.data(), n, 0.5f, nullptr);
      CHECK(s2 == s);
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

// The fused pass's GEMMs over the row panels give the same bits as over the row-major rows,
// on every instruction set, for tiles that start and end inside a panel, with rows of zero
// weight skipped, and the panels hold the rows (zero-padded last panel).
void test_panel_gemms_every_level() {
  const size_t n = 61, d = 29;  // 61 rows: a last panel of 1 row; d not a multiple of R
  std::vector<float> data = random_vec(n * d, 91);
  auto rs = sf::ReferenceSet::build(data.data(), n, d, true);
  const size_t np = (n + sf::kPanelRows - 1) / sf::kPanelRows;
  for (size_t j = 0; j < np * sf::kPanelRows; ++j)
    for (size_t k = 0; k < d; ++k) {
      const float want = j < n ? rs->rows()[j * d + k] : 0.0f;
      CHECK(rs->panels()[(j / sf::kPanelRows) * sf::kPanelRows * d + k * sf::kPanelRows + j % sf::kPanelRows] == want);
    }
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    const sf::KernelTable& kt = sf::kernels();
    const size_t QB = kt.qblock;
    std::vector<float> XT = random_vec(d * QB, 92);
    const size_t spans[][2] = {{0, 61}, {5, 19}, {12, 24}, {7, 1}, {13, 48}, {60, 1}, {0, 12}, {1, 11}};
    for (const auto& sp : spans) {
      const size_t j0 = sp[0], nt = sp[1];
      g_context = level + " j0=" + std::to_string(j0) + " nt=" + std::to_string(nt);
      std::vector<float> S1(nt * QB + QB, 3.0f), S2(nt * QB + QB, 3.0f);
      kt.dot_lanes(XT.data(), rs->rows() + j0 * d, nt, d, S1.data());
      kt.dot_panels(XT.data(), rs->panels(), j0, nt, d, S2.data());
      CHECK(std::memcmp(S1.data(), S2.data(), S1.size() * sizeof(float)) == 0);
      CHECK(S2[nt * QB] == 3.0f);  // nothing written past the tile
      // weights with some all-zero rows (skipped by both) and some zero lanes
      std::vector<float> P = random_vec(nt * QB, 93 + static_cast<uint32_t>(nt), 0.0f, 1.0f);
      for (size_t j = 0; j < nt; ++j)
        for (size_t q = 0; q < QB; ++q)
          if (j % 3 == 1 || (j + q) % 5 == 0) P[j * QB + q] = 0.0f;
      std::vector<double> A1(d * QB, 0.25), A2(d * QB, 0.25);
      kt.acc_lanes(A1.data(), P.data(), rs->rows() + j0 * d, nt, d);
      kt.acc_panels(A2.data(), P.data(), rs->rows() + j0 * d, rs->panels(), j0, nt, d);
      CHECK(std::memcmp(A1.data(), A2.data(), A1.size() * sizeof(double)) == 0);
      bool moved = false;
      for (double v : A2) moved = moved || v != 0.25;
      CHECK(moved);
      // few rows with weight (acc_panels reads the row-major rows then)
      for (size_t j = 0; j < nt; ++j)
        if (j % 4 != 2)
          for (size_t q = 0; q < QB; ++q) P[j * QB + q] = 0.0f;
      kt.acc_lanes(A1.data(), P.data(), rs->rows() + j0 * d, nt, d);
      kt.acc_panels(A2.data(), P.data(), rs->rows() + j0 * d, rs->panels(), j0, nt, d);
      CHECK(std::memcmp(A1.data(), A2.data(), A1.size() * sizeof(double)) == 0);
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

// The second GEMM's sparse tiles (each half of a block's lanes over its own rows when most
// rows carry weight in one half, both halves together otherwise) give every lane, per
// coordinate, the float sum in row order of weight times row, flushed once into the double:
// the zero weights a path skips add nothing. Both kernels (row-major and panels), every level.
void test_second_gemm_halves_every_level() {
  const size_t n = 200, d = 37;
  std::vector<float> data = random_vec(n * d, 95);
  auto rs = sf::ReferenceSet::build(data.data(), n, d, true);
  const float* Y = rs->rows();
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    const sf::KernelTable& kt = sf::kernels();
    const size_t QB = kt.qblock, W = QB / 2;
    for (int pattern = 0; pattern < 3; ++pattern) {
      g_context = level + " pattern " + std::to_string(pattern);
      std::vector<float> P = random_vec(n * QB, 96 + static_cast<uint32_t>(pattern), 0.1f, 1.0f);
      for (size_t j = 0; j < n; ++j)
        for (size_t q = 0; q < QB; ++q) {
          bool keep = false;
          if (pattern == 0) keep = j % 5 == 0 && (q < W) == (j % 2 == 0);  // one half a row: the halves
          if (pattern == 1) keep = j % 5 == 0;                              // both halves: together
          if (pattern == 2) keep = j % 7 == 0 && q == j % QB;               // one lane a row
          if (!keep) P[j * QB + q] = 0.0f;
        }
      // with fused multiply-adds (the SIMD levels; the scalar level where the compiler fuses
      // a * b + c, as on arm64) or without (the scalar level on x86-64)
      std::vector<double> fused(d * QB, 0.25), plain(d * QB, 0.25);
      for (size_t q = 0; q < QB; ++q)
        for (size_t k = 0; k < d; ++k) {
          float af = 0.0f, ap = 0.0f;
          for (size_t j = 0; j < n; ++j) {
            const float p = P[j * QB + q], y = Y[j * d + k];
            af = std::fma(p, y, af);
            volatile float prod = p * y;
            ap = prod + ap;
          }
          fused[k * QB + q] += static_cast<double>(af);
          plain[k * QB + q] += static_cast<double>(ap);
        }
      const auto is_want = [&](const std::vector<double>& a) {
        return std::memcmp(a.data(), fused.data(), a.size() * sizeof(double)) == 0 ||
               std::memcmp(a.data(), plain.data(), a.size() * sizeof(double)) == 0;
      };
      std::vector<double> A1(d * QB, 0.25), A2(d * QB, 0.25);
      kt.acc_lanes(A1.data(), P.data(), Y, n, d);
      kt.acc_panels(A2.data(), P.data(), Y, rs->panels(), 0, n, d);
      CHECK(is_want(A1));
      CHECK(is_want(A2));
      CHECK(std::memcmp(A1.data(), A2.data(), A1.size() * sizeof(double)) == 0);
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

// The online softmax flushes a weight below e^-floor of the larger of its lazy reference M and
// the running maximum R of the earlier tiles (which M lags by up to kSoftmaxSlack), and returns
// R updated by the tile; on every level, with the log-weights given or formed from cA S + cB yy
// + cC.
void test_softmax_running_max_every_level() {
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    const sf::KernelTable& kt = sf::kernels();
    const size_t QB = kt.qblock, nt = 6;
    const float floor = 20.0f;
    for (int fused = 0; fused < 2; ++fused) {
      g_context = level + (fused ? " fused" : " plain");
      // lane q: M = 0, R = 10 (lanes 0 mod 3), R = -1e30 (none yet: lanes 1 mod 3) or R = -5
      // (below M: lanes 2 mod 3); logits 0, -9.5, -10.5, -19.5, -20.5, 4 (the tile's max, not
      // enough to move M)
      const float logits[nt] = {0.0f, -9.5f, -10.5f, -19.5f, -20.5f, 4.0f};
      std::vector<float> L(nt * QB), P(nt * QB, -1.0f), M(QB, 0.0f), R(QB), scale(QB), sums(3 * QB), yy(nt, 1.0f);
      std::vector<float> cA(QB, 2.0f), cB(QB, 0.5f), cC(QB, -0.5f);
      for (size_t q = 0; q < QB; ++q) R[q] = q % 3 == 0 ? 10.0f : (q % 3 == 1 ? -1e30f : -5.0f);
      for (size_t j = 0; j < nt; ++j)
        for (size_t q = 0; q < QB; ++q) L[j * QB + q] = fused ? logits[j] / 2.0f : logits[j];  // 2 (l/2) + 0.5 - 0.5
      kt.softmax_lanes(L.data(), P.data(), nt, yy.data(), M.data(), R.data(), scale.data(), sums.data(),
                       fused ? cA.data() : nullptr, fused ? cB.data() : nullptr, fused ? cC.data() : nullptr, 0u, floor);
      for (size_t q = 0; q < QB; ++q) {
        const float top = q % 3 == 0 ? 10.0f : 0.0f;  // max(M, R)
        double sum = 0;
        for (size_t j = 0; j < nt; ++j) {
          const float p = P[j * QB + q];
          const bool zero = logits[j] < top - floor;
          CHECK(zero ? p == 0.0f : std::fabs(p - std::exp(logits[j])) <= 1e-5f * std::exp(logits[j]));
          sum += p;
        }
        CHECK(M[q] == 0.0f && scale[q] == 1.0f);
        CHECK(std::fabs(sums[q] - sum) <= 1e-5 * sum);
        CHECK(R[q] == (q % 3 == 0 ? 10.0f : 4.0f));
      }
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

// The pruned pass's first level in the rows layout, up to 4 queries at once: each query gets
// the same bits in any group as alone, for tiles of any length, on every level, and within a
// few float roundings of the bound in double.
void test_bounds_cols_every_level() {
  const size_t kp = 17, stride = 131;
  std::vector<float> At = random_vec(kp * stride, 97), aa = random_vec(stride, 98, 0.0f, 3.0f);
  std::vector<float> b = random_vec(4 * kp, 99), c = random_vec(12, 100);
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    const sf::KernelTable& kt = sf::kernels();
    for (const size_t nt : {size_t{1}, size_t{7}, size_t{16}, size_t{33}, size_t{64}, size_t{100}, size_t{131}})
      for (size_t nq = 1; nq <= 4; ++nq) {
        g_context = level + " nt=" + std::to_string(nt) + " nq=" + std::to_string(nq);
        std::vector<float> one(nq * nt), many(nq * nt + 1, 5.0f), lo(4), lo1(1);
        const float* bq[4];
        float* out[4];
        float cA[4], cB[4], cC[4];
        for (size_t q = 0; q < nq; ++q) {
          bq[q] = b.data() + q * kp;
          out[q] = many.data() + q * nt;
          cA[q] = c[3 * q];
          cB[q] = c[3 * q + 1];
          cC[q] = c[3 * q + 2];
        }
        kt.bounds_cols(At.data(), stride, nt, kp, nq, bq, cA, cB, cC, aa.data(), out, lo.data());
        for (size_t q = 0; q < nq; ++q) {
          float* o = one.data() + q * nt;
          kt.bounds_cols(At.data(), stride, nt, kp, 1, bq + q, cA + q, cB + q, cC + q, aa.data(), &o, lo1.data());
          CHECK(lo1[0] == lo[q]);
          float mn = 3.0e38f;
          bool close = true;  // one check per query (not per element: the counts stay readable)
          for (size_t j = 0; j < nt; ++j) {
            double s = 0, sa = 0;
            for (size_t t = 0; t < kp; ++t) {
              s += static_cast<double>(bq[q][t]) * At[t * stride + j];
              sa += std::fabs(static_cast<double>(bq[q][t]) * At[t * stride + j]);
            }
            const double want = cA[q] * s + (static_cast<double>(cB[q]) * aa[j] + cC[q]);
            const double tol = 1e-6 * (std::fabs(cA[q]) * sa + std::fabs(static_cast<double>(cB[q]) * aa[j]) + std::fabs(cC[q]));
            close = close && std::fabs(many[q * nt + j] - want) <= tol;
            mn = std::min(mn, many[q * nt + j]);
          }
          CHECK(close);
          CHECK(mn == lo[q]);
        }
        CHECK(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
        CHECK(many[nq * nt] == 5.0f);  // nothing written past the last query's bounds
      }
  }
  sf::set_simd_level(sf::simd_available().front());
}

void test_unsupported_level() {
  g_context = "set_simd_level";
  bool threw = false;
  try {
    sf::set_simd_level("sse9");
  } catch (const sf::Error& e) {
    threw = std::string(e.code()) == sf::code::kUnsupported;
  }
  CHECK(threw);
}

struct Batch {
  size_t B, d;
  std::vector<float> a, b, alpha, sigma;
};

Batch make_batch(size_t B, size_t d, uint32_t seed) {
  Batch t{B, d, random_vec(B * d, seed), random_vec(B * d, seed + 1), random_vec(B, seed + 2, 0.1f, 1.0f),
          random_vec(B, seed + 3, 0.01f, 5.0f)};
  return t;
}

void test_targets_against_float64() {
  const size_t shapes[][2] = {{1, 1}, {3, 17}, {5, 1023}, {40000, 2}, {2, 70001}};
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    for (auto& sh : shapes) {
      const size_t B = sh[0], d = sh[1];
      g_context = level + " B=" + std::to_string(B) + " d=" + std::to_string(d);
      Batch t = make_batch(B, d, 7);
      sf::Coef al{t.alpha.data(), 0}, sg{t.sigma.data(), 0};
      std::vector<float> out(B * d);
      std::vector<double> ref(B * d), mag(B * d);

      sf::perturb(out.data(), t.a.data(), t.b.data(), B, d, al, sg, true);
      for (size_t i = 0; i < B; ++i)
        for (size_t k = 0; k < d; ++k)
        {
          ref[i * d + k] = double(t.alpha[i]) * t.a[i * d + k] + double(t.sigma[i]) * t.b[i * d + k];
          mag[i * d + k] = std::fabs(double(t.alpha[i]) * t.a[i * d + k]) + std::fabs(double(t.sigma[i]) * t.b[i * d + k]);
        }
      CHECK(close_mag(out, ref, mag, 4e-7));

      sf::conditional_score(out.data(), t.a.data(), t.b.data(), B, d, al, sg, true);
      for (size_t i = 0; i < B; ++i)
        for (size_t k = 0; k < d; ++k) {
          const double s = t.sigma[i];
          ref[i * d + k] = -(double(t.a[i * d + k]) - double(t.alpha[i]) * t.b[i * d + k]) / (s * s);
          mag[i * d + k] = (std::fabs(t.a[i * d + k]) + std::fabs(double(t.alpha[i]) * t.b[i * d + k])) / (s * s);
        }
      CHECK(close_mag(out, ref, mag, 4e-7));

      // Scalar coefficients take the flat path.
      sf::perturb(out.data(), t.a.data(), t.b.data(), B, d, sf::Coef{nullptr, 0.5}, sf::Coef{nullptr, 2.0}, true);
      for (size_t i = 0; i < B * d; ++i) {
        ref[i] = 0.5 * t.a[i] + 2.0 * t.b[i];
        mag[i] = std::fabs(0.5 * t.a[i]) + std::fabs(2.0 * t.b[i]);
      }
      CHECK(close_mag(out, ref, mag, 4e-7));

      sf::velocity_target(out.data(), t.a.data(), t.b.data(), B, d, sf::Coef{nullptr, -1.0}, sg, true);
      for (size_t i = 0; i < B; ++i)
        for (size_t k = 0; k < d; ++k) {
          ref[i * d + k] = -double(t.a[i * d + k]) + double(t.sigma[i]) * t.b[i * d + k];
          mag[i * d + k] = std::fabs(t.a[i * d + k]) + std::fabs(double(t.sigma[i]) * t.b[i * d + k]);
        }
      CHECK(close_mag(out, ref, mag, 4e-7));
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

// Float64 conversion written from the docs/math.md table, independently of targets.cpp.
double ref_convert(int from, int to, double m, double x, double al, double sg) {
  double x0, eps;
  switch (from) {
    case 0: eps = m; x0 = (x - sg * m) / al; break;
    case 1: x0 = m; eps = (x - al * m) / sg; break;
    case 2: x0 = (al * x - sg * m) / (al * al + sg * sg); eps = (sg * x + al * m) / (al * al + sg * sg); break;
    default: x0 = (x + sg * sg * m) / al; eps = -sg * m; break;
  }
  switch (to) {
    case 0: return eps;
    case 1: return x0;
    case 2: return al * eps - sg * x0;
    default: return -eps / sg;
  }
}

void test_convert_table() {
  const size_t B = 9, d = 33;
  Batch t = make_batch(B, d, 21);
  sf::Coef al{t.alpha.data(), 0}, sg{t.sigma.data(), 0};
  for (int from = 0; from < 4; ++from) {
    for (int to = 0; to < 4; ++to) {
      g_context = "convert " + std::to_string(from) + "->" + std::to_string(to);
      std::vector<float> out(B * d);
      sf::convert(static_cast<sf::Param>(from), static_cast<sf::Param>(to), out.data(), t.a.data(),
                  t.b.data(), B, d, al, sg, true);
      std::vector<double> ref(B * d), mag(B * d);
      for (size_t i = 0; i < B; ++i)
        for (size_t k = 0; k < d; ++k)
          ref[i * d + k] = ref_convert(from, to, t.a[i * d + k], t.b[i * d + k], t.alpha[i], t.sigma[i]);
      // Tolerance relative to the size of the terms, which can cancel.
      bool ok = true;
      for (size_t i = 0; i < B * d && ok; ++i) {
        const size_t row = i / d;
        const double scale = (std::fabs(t.a[i]) + std::fabs(t.b[i]) + 1.0) *
                             (1.0 + 1.0 / (t.sigma[row] * t.sigma[row]) + 1.0 / t.alpha[row]) *
                             (1.0 + t.sigma[row] + t.alpha[row]);
        ok = std::fabs(out[i] - ref[i]) <= 2e-6 * scale;
        if (!ok) std::printf("  at %zu: %.9g vs %.9g\n", i, static_cast<double>(out[i]), ref[i]);
      }
      CHECK(ok);
      // Round trip back to the source parameterisation.
      std::vector<float> back(B * d);
      sf::convert(static_cast<sf::Param>(to), static_cast<sf::Param>(from), back.data(), out.data(),
                  t.b.data(), B, d, al, sg, true);
      bool rt = true;
      for (size_t i = 0; i < B * d && rt; ++i) rt = std::fabs(back[i] - t.a[i]) <= 2e-3 * (1.0 + std::fabs(t.a[i]));
      CHECK(rt);
    }
  }
}

void test_thread_count_invariance() {
  const size_t B = 300, d = 777;  // several chunks, rows crossing chunk boundaries
  Batch t = make_batch(B, d, 99);
  sf::Coef w{t.alpha.data(), 0};
  std::vector<float> base_grad(B * d), base_noise(B * d), base_perturb(B * d);
  double base_loss = 0;
  for (unsigned threads : {1u, 2u, 3u, 5u}) {
    g_context = "threads=" + std::to_string(threads);
    sf::ThreadPool::global().set_threads(threads);
    CHECK(sf::ThreadPool::global().threads() == threads);
    for (bool inline_ok : {true, false}) {
      std::vector<float> grad(B * d), noise(B * d), pert(B * d);
      const double loss = sf::dsm_loss(t.a.data(), t.b.data(), B, d, w, grad.data(), inline_ok);
      sf::randn(noise.data(), B, d, 42, 3, 0, inline_ok);
      sf::perturb(pert.data(), t.a.data(), noise.data(), B, d, sf::Coef{t.alpha.data(), 0},
                  sf::Coef{t.sigma.data(), 0}, inline_ok);
      if (threads == 1 && inline_ok) {
        base_loss = loss;
        base_grad = grad;
        base_noise = noise;
        base_perturb = pert;
      } else {
        CHECK(loss == base_loss);
        CHECK(same_bits(grad, base_grad));
        CHECK(same_bits(noise, base_noise));
        CHECK(same_bits(pert, base_perturb));
      }
    }
  }
  sf::ThreadPool::global().set_threads(sf::ThreadPool::hardware_threads());
}

void test_dsm_loss_value() {
  g_context = "dsm_loss";
  const size_t B = 13, d = 101;
  Batch t = make_batch(B, d, 5);
  std::vector<float> grad(B * d);
  const double loss = sf::dsm_loss(t.a.data(), t.b.data(), B, d, sf::Coef{t.sigma.data(), 0}, grad.data(), true);
  double ref = 0;
  std::vector<double> ref_grad(B * d);
  for (size_t i = 0; i < B; ++i)
    for (size_t k = 0; k < d; ++k) {
      const double dl = double(t.a[i * d + k]) - t.b[i * d + k];
      ref += t.sigma[i] * dl * dl;
      ref_grad[i * d + k] = 2.0 * t.sigma[i] * dl / B;
    }
  ref /= B;
  CHECK(std::fabs(loss - ref) <= 1e-6 * ref);
  CHECK(close(grad, ref_grad, 1e-5, 1e-3));
  CHECK(sf::dsm_loss(t.a.data(), t.b.data(), 0, d, sf::Coef{nullptr, 1.0}, nullptr, true) == 0.0);
}

void test_randn_properties() {
  g_context = "randn";
  const size_t B = 64, d = 513;
  std::vector<float> all(B * d);
  sf::randn(all.data(), B, d, 7, 0, 0, true);
  // Sample i's noise depends only on (seed, stream, i): generate rows one at a time.
  bool rows_match = true;
  for (size_t i = 0; i < B; ++i) {
    std::vector<float> one(d);
    sf::randn(one.data(), 1, d, 7, 0, i, true);
    rows_match = rows_match && std::memcmp(one.data(), all.data() + i * d, d * sizeof(float)) == 0;
  }
  CHECK(rows_match);
  double mean = 0, var = 0;
  for (float v : all) mean += v;
  mean /= all.size();
  for (float v : all) var += (v - mean) * (v - mean);
  var /= all.size() - 1;
  // 32832 draws: the standard error of the mean is 0.0055, of the variance about 0.008.
  CHECK(std::fabs(mean) < 0.03);
  CHECK(std::fabs(var - 1.0) < 0.04);
  std::vector<float> other(B * d);
  sf::randn(other.data(), B, d, 7, 1, 0, true);
  CHECK(!same_bits(all, other));
  sf::randn(other.data(), B, d, 8, 0, 0, true);
  CHECK(!same_bits(all, other));
}

void test_pool_exceptions_and_concurrency() {
  g_context = "pool";
  sf::ThreadPool& pool = sf::ThreadPool::global();
  pool.set_threads(2);
  bool caught = false;
  std::atomic<int> ran{0};
  try {
    pool.parallel_for(64, [&](size_t i) {
      ran++;
      if (i == 17) throw sf::Error(sf::code::kRange, "boom");
    }, false);
  } catch (const sf::Error& e) {
    caught = std::string(e.what()) == "boom";
  }
  CHECK(caught);
  CHECK(ran.load() == 64);

  // Many callers at once, resizing in between: every job completes with its own result.
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 50; ++rep) {
        std::vector<int> hits(37, 0);
        pool.parallel_for(hits.size(), [&](size_t i) { hits[i] += c + 1; }, rep % 2 == 0);
        for (int h : hits) if (h != c + 1) wrong++;
      }
    });
  }
  for (unsigned n : {1u, 3u, 2u, 4u}) pool.set_threads(n);
  for (std::thread& t : callers) t.join();
  CHECK(wrong.load() == 0);
  pool.set_threads(sf::ThreadPool::hardware_threads());
}

void test_overflow_checked() {
  g_context = "overflow";
  bool threw = false;
  try {
    sf::checked_mul(size_t{1} << 40, size_t{1} << 40, "test");
  } catch (const sf::Error& e) {
    threw = std::string(e.code()) == sf::code::kOverflow;
  }
  CHECK(threw);
}

// Float64 direct-difference reference of the estimator's mean and log-density.
void ref_estimate(const std::vector<float>& Y, size_t d, const float* x, double al, double sg, std::vector<double>& m,
                  double& logp) {
  const size_t N = Y.size() / d;
  std::vector<double> l(N);
  double mx = -1e300;
  for (size_t j = 0; j < N; ++j) {
    double r2 = 0;
    for (size_t k = 0; k < d; ++k) {
      const double t = x[k] - al * Y[j * d + k];
      r2 += t * t;
    }
    l[j] = -r2 / (2 * sg * sg);
    mx = std::max(mx, l[j]);
  }
  double s = 0;
  m.assign(d, 0.0);
  for (size_t j = 0; j < N; ++j) {
    const double w = std::exp(l[j] - mx);
    s += w;
    for (size_t k = 0; k < d; ++k) m[k] += w * Y[j * d + k];
  }
  for (double& v : m) v /= s;
  logp = mx + std::log(s) - 0.5 * d * std::log(2 * 3.14159265358979323846 * sg * sg) - std::log(double(N));
}

void test_estimator_against_float64() {
  // Shapes that take the rows path (B < lanes) and the lanes path with a partial block,
  // several tiles and shards; small and large sigma (precise recomputation on and off).
  const size_t shapes[][3] = {{700, 3, 1}, {700, 3, 37}, {300, 70, 5}, {300, 70, 40}, {50, 1, 3}};
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    for (auto& sh : shapes) {
      const size_t N = sh[0], d = sh[1], B = sh[2];
      std::vector<float> Y = random_vec(N * d, 101 + uint32_t(N + d), -1, 1);
      auto ref = sf::ReferenceSet::build(Y.data(), N, d, true);
      for (double sg : {0.005, 0.3, 20.0}) {
        g_context = level + " N=" + std::to_string(N) + " d=" + std::to_string(d) + " B=" + std::to_string(B) +
                    " sigma=" + std::to_string(sg);
        std::vector<float> X = random_vec(B * d, 202, -1, 1);
        for (size_t q = 0; q < B; ++q)  // near data points
          for (size_t k = 0; k < d; ++k) X[q * d + k] = Y[((q * 7) % N) * d + k] + float(sg) * X[q * d + k];
        std::vector<float> mean(B * d), logp(B), ess(B), tr(B);
        sf::EstimateRequest req;
        req.x = X.data();
        req.B = B;
        req.sigma = sf::Coef{nullptr, sg};
        sf::EstimateOutputs out;
        out.mean = mean.data();
        out.log_density = logp.data();
        out.ess = ess.data();
        out.trace_cov = tr.data();
        sf::estimate(*ref, req, out, true);
        bool ok = true;
        for (size_t q = 0; q < B && ok; ++q) {
          std::vector<double> m;
          double lp;
          ref_estimate(Y, d, X.data() + q * d, 1.0, sg, m, lp);
          double e = 0, n = 0;
          for (size_t k = 0; k < d; ++k) {
            e += (mean[q * d + k] - m[k]) * (mean[q * d + k] - m[k]);
            n += m[k] * m[k];
          }
          ok = std::sqrt(e) <= 1e-5 * std::sqrt(n) + 1e-6 && std::fabs(logp[q] - lp) <= 1e-4 * std::max(1.0, std::fabs(lp)) &&
               ess[q] >= 1 - 1e-5 && ess[q] <= N * (1 + 1e-5) && tr[q] >= 0;
          if (!ok) std::printf("  query %zu: logp %.9g vs %.9g\n", q, double(logp[q]), lp);
        }
        CHECK(ok);
      }
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

// A random set and batch of queries with their request (req.x points into X).
struct EstimateCase {
  std::vector<float> Y, X;
  decltype(sf::ReferenceSet::build(nullptr, 0, 0, true)) ref;
  sf::EstimateRequest req;
};

EstimateCase estimate_case(size_t N, size_t d, size_t B, uint32_t seed, float lo, float hi, double sigma) {
  EstimateCase c;
  c.Y = random_vec(N * d, seed, lo, hi);
  c.ref = sf::ReferenceSet::build(c.Y.data(), N, d, true);
  c.X = random_vec(B * d, seed + 1, lo, hi);
  c.req.x = c.X.data();
  c.req.B = B;
  c.req.sigma = sf::Coef{nullptr, sigma};
  return c;
}

// The means are bit-identical for every thread count (the first gives the reference bits,
// which are returned).
std::vector<float> check_same_bits_over_threads(const EstimateCase& c, std::initializer_list<unsigned> counts) {
  std::vector<float> base(c.req.B * c.ref->dim()), got(base.size());
  sf::EstimateOutputs out;
  bool first = true;
  for (unsigned threads : counts) {
    sf::ThreadPool::global().set_threads(threads);
    out.mean = first ? base.data() : got.data();
    sf::estimate(*c.ref, c.req, out, threads % 2 == 0);
    if (!first) CHECK(same_bits(base, got));
    first = false;
  }
  sf::ThreadPool::global().set_threads(sf::ThreadPool::hardware_threads());
  return base;
}

// Many query blocks run in groups over the same tiles (fused_pass.cpp, Plan::group: groups of
// 4 with 1 thread, 2 with 2, none with 3 or 5): the same bits whatever the grouping.
void test_estimator_groups() {
  g_context = "estimator groups of query blocks";
  check_same_bits_over_threads(estimate_case(3000, 150, 300, 311, -1, 1, 0.5), {1u, 2u, 3u, 5u});
}

void test_estimator_partials_and_threads() {
  g_context = "estimator partials/threads";
  const size_t N = 4000, d = 9, B = 20;
  EstimateCase ec = estimate_case(N, d, B, 303, -2, 2, 0.2);
  const auto& ref = ec.ref;
  const sf::EstimateRequest& req = ec.req;
  std::vector<float>& X = ec.X;
  const std::vector<float> base = check_same_bits_over_threads(ec, {1u, 2u, 3u});
  std::vector<float> got(B * d);
  sf::EstimateOutputs out;
  // Shards merged in any order give the same result up to rounding.
  sf::EstimateRequest a = req, b = req;
  a.begin = 0;
  a.end = 1234;
  b.begin = 1234;
  b.end = N;
  sf::PartialState sb = sf::estimate_partial(*ref, b, true);
  sf::PartialState sa = sf::estimate_partial(*ref, a, true);
  sf::merge_partial(sb, sa);
  CHECK(sb.count == double(N));
  out.mean = got.data();
  sf::finalize_partial(sb, X.data(), req.alpha, req.sigma, req.kernel, out);
  bool close_all = true;
  for (size_t i = 0; i < B * d; ++i) close_all = close_all && std::fabs(got[i] - base[i]) <= 1e-5 * (1 + std::fabs(base[i]));
  CHECK(close_all);
  // Non-finite queries are refused with a coded error.
  X[5] = std::nanf("");
  bool threw = false;
  try {
    sf::estimate(*ref, req, out, true);
  } catch (const sf::Error& e) {
    threw = std::string(e.code()) == sf::code::kRange;
  }
  CHECK(threw);
}

void test_reference_set_exact_centring() {
  g_context = "reference set centring";
  // Data far from the origin: rows + centre reproduce every value bit for bit.
  std::vector<float> Y = random_vec(500 * 4, 401, 9.5f, 10.5f);
  Y[7] = 0.00390625f;  // a coordinate with a value near 0: that column must fall back
  auto ref = sf::ReferenceSet::build(Y.data(), 500, 4, true);
  bool exact = true;
  for (size_t i = 0; i < 500 * 4; ++i) exact = exact && ref->rows()[i] + ref->centre()[i % 4] == Y[i];
  CHECK(exact);
  CHECK(ref->centre()[0] != 0.0f);  // a far-off column is centred
}

void test_steps() {
  g_context = "steps";
  const size_t B = 3, d = 37;
  std::vector<float> x = random_vec(B * d, 501), D = random_vec(B * d, 502), xp = random_vec(B * d, 503),
                     Dp = random_vec(B * d, 504);
  std::vector<float> s = {1.5f, 0.7f, 2.0f}, sn = {1.0f, 0.0f, 1.2f};
  std::vector<float> out(B * d), h(B * d);
  sf::euler_step(out.data(), x.data(), D.data(), B, d, sf::Coef{s.data(), 0}, sf::Coef{sn.data(), 0}, true);
  sf::heun_correct(h.data(), x.data(), D.data(), xp.data(), Dp.data(), B, d, sf::Coef{s.data(), 0},
                   sf::Coef{sn.data(), 0}, true);
  bool ok = true;
  for (size_t i = 0; i < B; ++i)
    for (size_t k = 0; k < d; ++k) {
      const size_t j = i * d + k;
      const double hh = double(sn[i]) - s[i];
      const double e = x[j] + hh * (double(x[j]) - D[j]) / s[i];
      ok = ok && std::fabs(out[j] - e) <= 1e-5 * (1 + std::fabs(e));
      const double hv = sn[i] == 0 ? xp[j] : x[j] + 0.5 * hh * ((double(x[j]) - D[j]) / s[i] + (double(xp[j]) - Dp[j]) / sn[i]);
      ok = ok && std::fabs(h[j] - hv) <= 1e-5 * (1 + std::fabs(hv));
    }
  CHECK(ok);
  // Per-sample seeds: a sample's noise follows its seed, not its row.
  std::vector<uint64_t> seeds = {11, 22, 33};
  std::vector<float> z(B * d), z1(d);
  sf::NoiseSpec spec;
  spec.seeds = seeds.data();
  spec.stream = 4;
  sf::noise(z.data(), B, d, spec, true);
  std::vector<uint64_t> one = {22};
  spec.seeds = one.data();
  sf::noise(z1.data(), 1, d, spec, true);
  CHECK(std::memcmp(z1.data(), z.data() + d, d * sizeof(float)) == 0);
}

void test_native_sampler() {
  g_context = "native sampler";
  const size_t N = 300, d = 2, B = 20;
  std::vector<float> Y = random_vec(N * d, 601, -1, 1);
  auto ref = sf::ReferenceSet::build(Y.data(), N, d, true);
  std::vector<double> sigmas = {10.0, 3.0, 1.0, 0.3, 0.05, 0.0};
  std::vector<float> x = random_vec(B * d, 602, -10, 10);
  sf::SampleRequest req;
  req.sigmas = sigmas.data();
  req.n_sigmas = sigmas.size();
  req.B = B;
  req.x = x.data();
  req.s_churn = 10;
  req.noise.seed = 5;
  size_t progress = 0;
  req.progress = [&](size_t done, size_t total) { progress = done + 0 * total; };
  const sf::SampleStats st = sf::sample_reference(*ref, req, false);
  CHECK(st.nfe == 2 * 5 - 1);
  CHECK(progress == 5);
  bool near = true;  // every sample ends near a reference point
  for (size_t i = 0; i < B; ++i) {
    double best = 1e30;
    for (size_t j = 0; j < N; ++j) best = std::min(best, double(std::hypot(x[i * d] - Y[j * d], x[i * d + 1] - Y[j * d + 1])));
    near = near && best < 0.2;
  }
  CHECK(near);
  std::atomic<bool> stop{true};
  req.abort = &stop;
  bool aborted = false;
  try {
    sf::sample_reference(*ref, req, true);
  } catch (const sf::Error& e) {
    aborted = std::string(e.code()) == sf::code::kAborted;
  }
  CHECK(aborted);
}

void test_nonlinear_kernels() {
  // Poisson and radial kernels against a float64 softmax, on every SIMD level, in the rows
  // and lanes layouts.
  const size_t N = 400, d = 6;
  std::vector<float> Y = random_vec(N * d, 701, -1, 1);
  auto ref = sf::ReferenceSet::build(Y.data(), N, d, true);
  const sf::KernelKind kinds[] = {sf::KernelKind::Poisson, sf::KernelKind::RadialTanh, sf::KernelKind::RadialExp};
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    for (sf::KernelKind kind : kinds) {
      for (size_t B : {size_t{3}, size_t{40}}) {
        g_context = level + " kernel " + std::to_string(int(kind)) + " B=" + std::to_string(B);
        const double tau = 0.3;
        std::vector<float> X = random_vec(B * d, 702, -1, 1);
        std::vector<float> mean(B * d);
        sf::EstimateRequest req;
        req.x = X.data();
        req.B = B;
        req.sigma = sf::Coef{nullptr, tau};
        req.kernel.kind = kind;
        req.kernel.D = 3;
        sf::EstimateOutputs out;
        out.mean = mean.data();
        sf::estimate(*ref, req, out, true);
        bool ok = true;
        for (size_t q = 0; q < B; ++q) {
          std::vector<double> l(N);
          double mx = -1e300;
          for (size_t j = 0; j < N; ++j) {
            double r2 = 0;
            for (size_t k = 0; k < d; ++k) r2 += std::pow(double(X[q * d + k]) - Y[j * d + k], 2);
            const double r = std::max(std::sqrt(r2), sf::kRadialFloor * tau), u = r / tau;
            l[j] = kind == sf::KernelKind::Poisson ? -0.5 * (d + 3.0) * std::log(r2 + tau * tau)
                   : kind == sf::KernelKind::RadialTanh ? -2 * std::log(std::cosh(u)) - (d - 1.0) * std::log(r)
                                                        : -u - (d - 1.0) * std::log(r);
            mx = std::max(mx, l[j]);
          }
          double s0 = 0;
          std::vector<double> m(d, 0.0);
          for (size_t j = 0; j < N; ++j) {
            const double w = std::exp(l[j] - mx);
            s0 += w;
            for (size_t k = 0; k < d; ++k) m[k] += w * Y[j * d + k];
          }
          for (size_t k = 0; k < d; ++k) ok = ok && std::fabs(mean[q * d + k] - m[k] / s0) < 1e-5;
        }
        CHECK(ok);
      }
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

}  // namespace

std::vector<uint8_t> npy_bytes(const std::string& dict, int major = 1, size_t data = 0) {
  std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  const size_t len = dict.size();
  b.push_back(static_cast<uint8_t>(len & 0xff));
  b.push_back(static_cast<uint8_t>((len >> 8) & 0xff));
  if (major >= 2) {
    b.push_back(static_cast<uint8_t>((len >> 16) & 0xff));
    b.push_back(static_cast<uint8_t>((len >> 24) & 0xff));
  }
  b.insert(b.end(), dict.begin(), dict.end());
  b.resize(b.size() + data, 0);
  return b;
}

std::string npy_error(const std::vector<uint8_t>& b) {
  try {
    sf::parse_npy_header(b.data(), b.size());
  } catch (const sf::Error& e) {
    return e.code();
  }
  return "";
}

void test_npy_header() {
  g_context = "npy";
  {
    const auto b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }       \n", 1, 48);
    const sf::NpyHeader h = sf::parse_npy_header(b.data(), b.size());
    CHECK(h.descr == "<f4" && h.kind == 'f' && h.item_size == 4 && h.byte_order == '<');
    CHECK(!h.fortran_order && h.shape.size() == 2 && h.shape[0] == 3 && h.shape[1] == 4);
    CHECK(h.data_offset == b.size() - 48 && h.elements == 12 && h.data_bytes == 48);
  }
  {
    const auto b = npy_bytes("{\"shape\": (7,), \"fortran_order\": True, \"descr\": \">f8\"}", 2);
    const sf::NpyHeader h = sf::parse_npy_header(b.data(), b.size());
    CHECK(h.major == 2 && h.byte_order == '>' && h.item_size == 8 && h.fortran_order && h.shape.size() == 1 && h.shape[0] == 7);
  }
  {
    const auto b = npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (), }");
    const sf::NpyHeader h = sf::parse_npy_header(b.data(), b.size());
    CHECK(h.item_size == 2 && h.shape.empty() && h.elements == 1);
  }
  const std::string fmt = sf::code::kFormat;
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False}")) == fmt);            // no shape
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}")) == fmt);
  CHECK(npy_error(npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}")) == fmt);
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, -2)}")) == fmt);
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), 'x': 1}")) == fmt);
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)", 1)) == fmt);  // unterminated
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)}", 4)) == fmt);  // version 4
  CHECK(npy_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2)}")) ==
        std::string(sf::code::kOverflow));
  CHECK(npy_error(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}")) ==
        std::string(sf::code::kOverflow));
  {
    auto b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)}");
    b[8] = 0xff;  // header length beyond the file
    CHECK(npy_error(b) == fmt);
    b[0] = 'X';
    CHECK(npy_error(b) == fmt);
    CHECK(npy_error(std::vector<uint8_t>(b.begin(), b.begin() + 9)) == fmt);
  }
  // Every truncation and random byte mutations of a valid header: parse or a coded error,
  // never a read outside the bytes (ASan checks the latter in the sanitizer build).
  const auto good = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }       \n", 1);
  bool all_coded = true;
  for (size_t n = 0; n <= good.size(); ++n) {
    std::vector<uint8_t> t(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      sf::parse_npy_header(t.data(), t.size());
    } catch (const sf::Error&) {
    } catch (...) {
      all_coded = false;
    }
  }
  std::mt19937 rng(5);
  for (int it = 0; it < 20000; ++it) {
    std::vector<uint8_t> t = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) t[rng() % t.size()] = static_cast<uint8_t>(rng());
    try {
      sf::parse_npy_header(t.data(), t.size());
    } catch (const sf::Error&) {
    } catch (...) {
      all_coded = false;
    }
  }
  CHECK(all_coded);
}

// Exact pruning on every SIMD level: clustered data (64 clusters in d = 48), queries near
// training points, sigma from 0.01 to 50: the pruned pass agrees with the full scan, prunes
// at small sigma, hands large sigma back to the full scan, and the
// kernels raise no denormal or underflow flag with FTZ/DAZ off.
// Two shapes, 37 queries each (a block of 32 in the lanes layout and 5 in the rows layout):
// d = 48 (one level of bounds) and d = 160 (two levels: the fused first-level selection).
// Queries are noised rows q * stride of the set (3 tiles of 1,024 rows).
void test_pruning_shape(size_t d, size_t B, size_t stride = 61) {
  const size_t N = 3000;
  std::vector<float> C = random_vec(64 * d, 501, -3, 3), Z = random_vec(N * d, 502, -0.1, 0.1), Y(N * d);
  for (size_t i = 0; i < N; ++i)
    for (size_t k = 0; k < d; ++k) Y[i * d + k] = C[(i % 64) * d + k] + Z[i * d + k];
  auto ref = sf::ReferenceSet::build(Y.data(), N, d, true);
  CHECK(ref->prune_index() != nullptr);
  CHECK(ref->prune_index()->k == d / 4);
  CHECK((ref->prune_index()->k1 > 0) == (d / 4 >= 32));
  sf::set_flush_denormals(false);
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    g_context = "pruning " + level + " d " + std::to_string(d) + " B " + std::to_string(B) + " stride " + std::to_string(stride);
    for (double sigma : {0.01, 0.1, 0.5, 5.0, 50.0}) {
      std::vector<float> X = random_vec(B * d, 503, -1, 1);
      for (size_t q = 0; q < B; ++q)
        for (size_t k = 0; k < d; ++k) X[q * d + k] = Y[(q * stride % N) * d + k] + static_cast<float>(sigma) * X[q * d + k];
      sf::EstimateRequest req;
      req.x = X.data();
      req.B = B;
      req.sigma = sf::Coef{nullptr, sigma};
      std::vector<float> full(B * d), pruned(B * d), ef(B), ep(B);
      sf::EstimateOutputs out;
      sf::set_pruning(false);
      out.mean = full.data();
      out.ess = ef.data();
      sf::estimate(*ref, req, out, true);
      sf::set_pruning(true);
      out.mean = pruned.data();
      out.ess = ep.data();
      sf::EstimateStats st;
      sf::fp_flags_seen(true);
      sf::estimate(*ref, req, out, true, &st);
      CHECK((sf::fp_flags_seen(true) & (sf::kFpDenormalFlag | sf::kFpUnderflowFlag)) == 0);
      CHECK(st.pairs == B * N);
      if (sigma <= 0.01) CHECK(st.sparse_queries == B && st.exact_pairs < B * N / 20);
      if (sigma >= 5) CHECK(st.sparse_queries == 0 && st.dense_pairs == B * N);
      bool ok = true;
      for (size_t i = 0; i < B * d; ++i) ok = ok && std::fabs(pruned[i] - full[i]) <= 1e-5 * (1 + std::fabs(full[i]));
      for (size_t q = 0; q < B; ++q) ok = ok && std::fabs(ep[q] - ef[q]) <= 1e-4 * ef[q];
      CHECK(ok);
    }
  }
  sf::set_flush_denormals(true);
  sf::set_simd_level(sf::simd_available().front());
  // Too few rows or dimensions: no index, the full scan runs.
  auto small = sf::ReferenceSet::build(Y.data(), sf::kPruneMinRows - 1, d, true);
  CHECK(small->prune_index() == nullptr);
}

void test_pruning() {
  test_pruning_shape(48, 37);
  test_pruning_shape(160, 37);
  // Rows 0, 83, ..., 2573 for the first block of 32: at small sigma after the pilot each tile
  // is needed only by the lanes whose own row lies in it (13, 12 and 7 of them), the others'
  // thresholds are under the tile's smallest bound for them (the skip test of the scan).
  test_pruning_shape(160, 37, 83);
}

// The projection of the pruning index (KernelTable::project) over a range of columns gives the
// same bits as over all of them: the pruned pass projects a lane onto the first level's
// directions first and onto the others only when the lane needs the second level.
void test_project_column_ranges() {
  const size_t d = 101, k = 64;
  std::vector<float> uf = random_vec(d * k, 91), vf = random_vec(9 * d, 92);
  std::vector<double> U(uf.begin(), uf.end()), V(vf.begin(), vf.end());
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    g_context = level + " project";
    for (size_t nv : {size_t{1}, size_t{2}, size_t{4}, size_t{5}, size_t{9}}) {
      std::vector<double> full(nv * k, -1.0), part(nv * k, -7.0);
      sf::kernels().project(V.data(), nv, d, U.data(), k, 0, k, full.data());
      bool close_to_ref = true;
      for (size_t v = 0; v < nv; ++v)
        for (size_t c = 0; c < k; ++c) {
          double r = 0, m = 0;
          for (size_t i = 0; i < d; ++i) {
            r += V[v * d + i] * U[i * k + c];
            m += std::fabs(V[v * d + i] * U[i * k + c]);
          }
          close_to_ref = close_to_ref && std::fabs(full[v * k + c] - r) <= 1e-13 * m;
        }
      CHECK(close_to_ref);
      for (const auto& [c0, c1] : {std::pair<size_t, size_t>{0, 16}, {16, 64}, {8, 40}, {0, 64}}) {
        std::fill(part.begin(), part.end(), -7.0);
        sf::kernels().project(V.data(), nv, d, U.data(), k, c0, c1, part.data());
        bool same = true, untouched = true;
        for (size_t v = 0; v < nv; ++v)
          for (size_t c = 0; c < k; ++c) {
            if (c >= c0 && c < c1) same = same && part[v * k + c] == full[v * k + c];
            else untouched = untouched && part[v * k + c] == -7.0;
          }
        CHECK(same);
        CHECK(untouched);
      }
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}

void test_first_nonfinite() {
  // every position around the scan's 256-element blocks, each non-finite kind, a later second one
  const float bad[] = {std::nanf(""), INFINITY, -INFINITY};
  for (size_t n : {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{257}, size_t{1000}}) {
    std::vector<float> v(n, 3.0e38f);
    CHECK(sf::first_nonfinite(v.data(), n) == n);
    for (size_t i : {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{511}, size_t{999}}) {
      if (i >= n) continue;
      for (float b : bad) {
        std::vector<float> w(v);
        w[i] = b;
        if (i + 3 < n) w[i + 3] = INFINITY;
        CHECK(sf::first_nonfinite(w.data(), n) == i);
      }
    }
  }
  const float big[] = {-3.4028235e38f, 1e-45f, -0.0f};  // finite extremes and a subnormal
  CHECK(sf::first_nonfinite(big, 3) == 3);
  // The kernel table's copies, compiled per instruction set, against the portable scan and
  // against a plain double loop for ||x - alpha c||^2 (every length around the vector widths).
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    g_context = level + " scans";
    const sf::KernelTable& kt = sf::kernels();
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{16}, size_t{17}, size_t{255}, size_t{256}, size_t{785}}) {
      std::vector<float> v = random_vec(n, 40 + static_cast<uint32_t>(n)), c = random_vec(n, 41);
      CHECK(kt.first_nonfinite(v.data(), n) == n);
      for (size_t i = 0; i < n; i += 1 + n / 5) {
        for (float b : bad) {
          std::vector<float> w(v);
          w[i] = b;
          CHECK(kt.first_nonfinite(w.data(), n) == i);
        }
      }
      for (double alpha : {1.0, -0.3, 0.0}) {
        double want = 0.0;
        for (size_t i = 0; i < n; ++i) want += (double(v[i]) - alpha * c[i]) * (double(v[i]) - alpha * c[i]);
        std::vector<double> diff(n + 2, 99.0);
        const double got = kt.centred_sq(v.data(), c.data(), alpha, n, diff.data() + 1);
        CHECK(std::fabs(got - want) <= 1e-12 * std::max(1.0, want));
        CHECK(kt.centred_sq(v.data(), c.data(), alpha, n, nullptr) == got);
        CHECK(diff[0] == 99.0 && diff[n + 1] == 99.0);
        bool same = true;
        for (size_t i = 0; i < n; ++i)  // (one rounding, or none where the compiler fuses it)
          same = same && std::fabs(diff[i + 1] - (double(v[i]) - alpha * c[i])) <= 0x1p-52 * (std::fabs(v[i]) + std::fabs(alpha * c[i]));
        CHECK(same);
      }
    }
  }
  sf::set_simd_level(sf::simd_available().front());
}


// The bf16 screen (docs/numerics.md, "The bf16 screen"): dot_listed is dot_lanes bit for bit on
// the listed rows (every level); the bf16 rounding (ties to even, tiny values to 0); and, where
// the CPU has AVX512_BF16, the set's bf16 panels and the bound of screen_bounds: the float32
// GEMM's dot product lies within L -/+ D of the bf16 one for every pair, on data whose
// coordinates span six orders of magnitude (so the roundings are large), odd and even d.
void test_bf16_screen() {
  g_context = "to_bf16";
  CHECK(sf::to_bf16(1.0f) == 0x3f80);
  CHECK(sf::to_bf16(1.0f + 0x1p-8f) == 0x3f80);              // tie: to even
  CHECK(sf::to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);          // tie: to even (up)
  CHECK(sf::to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);   // above the tie
  CHECK(sf::to_bf16(-2.5f) == 0xc020);
  CHECK(sf::to_bf16(1e-31f) == 0x0000 && sf::to_bf16(-1e-31f) == 0x8000);  // below 2^-100: signed 0
  CHECK(sf::from_bf16(sf::to_bf16(0.15625f)) == 0.15625f);
  for (const std::string& level : sf::simd_available()) {
    sf::set_simd_level(level);
    const sf::KernelTable& kt = sf::kernels();
    const size_t QB = kt.qblock, d = 300, nt = 37;
    std::vector<float> XT = random_vec(d * QB, 301), Y = random_vec(nt * d, 302);
    std::vector<uint32_t> rows;
    for (uint32_t j = 0; j < nt; ++j)
      if (j % 3 != 1) rows.push_back(j);
    std::vector<float> S1(nt * QB, 7.0f), S2(nt * QB, 7.0f);
    kt.dot_lanes(XT.data(), Y.data(), nt, d, S1.data());
    kt.dot_listed(XT.data(), Y.data(), rows.data(), rows.size(), d, S2.data());
    g_context = level + " dot_listed";
    bool same = true, untouched = true;
    for (uint32_t j = 0; j < nt; ++j)
      for (size_t q = 0; q < QB; ++q) {
        if (j % 3 != 1) same = same && std::memcmp(&S1[j * QB + q], &S2[j * QB + q], 4) == 0;
        else untouched = untouched && S2[j * QB + q] == 7.0f;
      }
    CHECK(same);
    CHECK(untouched);
  }
  sf::set_simd_level(sf::simd_available().front());
  const sf::DotBf16Fn dot = sf::dot_bf16_kernel();
  std::printf("bf16 screen kernel: %s\n", dot ? "yes" : "no (not checked)");
  if (!dot) return;
  const sf::KernelTable& kt = sf::kernels();
  if (kt.qblock != 32) return;
  for (const size_t d : {size_t{129}, size_t{256}}) {
    const size_t n = 53;
    std::mt19937 rng(400 + static_cast<uint32_t>(d));
    std::normal_distribution<float> g;
    std::uniform_real_distribution<float> ex(-3.0f, 3.0f);
    std::vector<float> data(n * d), x(32 * d);
    for (float& v : data) v = g(rng) * std::pow(10.0f, ex(rng));
    for (float& v : x) v = g(rng) * std::pow(10.0f, ex(rng));
    auto rs = sf::ReferenceSet::build(data.data(), n, d, true);
    g_context = "bf16 panels d=" + std::to_string(d);
    CHECK(rs->bf16_panels() != nullptr && rs->bf16_dim() == d + (d & 1));
    if (!rs->bf16_panels()) continue;
    const size_t dp = rs->bf16_dim();
    bool layout = true, norms = true;
    for (size_t j = 0; j < n; ++j) {
      double nb = 0, ne = 0;
      for (size_t k = 0; k < dp; ++k) {
        const float v = k < d ? rs->rows()[j * d + k] : 0.0f;
        const uint16_t b = rs->bf16_panels()[(j / sf::kPanelRows) * sf::kPanelRows * dp + (k / 2) * 2 * sf::kPanelRows +
                                             2 * (j % sf::kPanelRows) + (k & 1)];
        layout = layout && b == sf::to_bf16(v);
        nb += static_cast<double>(sf::from_bf16(b)) * sf::from_bf16(b);
        ne += (static_cast<double>(v) - sf::from_bf16(b)) * (static_cast<double>(v) - sf::from_bf16(b));
      }
      norms = norms && rs->bf16_norms()[j] >= std::sqrt(nb) && rs->bf16_errors()[j] >= std::sqrt(ne) &&
              rs->bf16_norms()[j] <= std::sqrt(nb) * 1.0001 + 1e-30;
    }
    CHECK(layout);
    CHECK(norms);
    // the queries' lanes as the fused pass builds them, and its per-lane constants
    std::vector<float> XT(d * 32);
    std::vector<uint16_t> Xb(dp * 32, 0);
    std::vector<double> bn(32, 0.0), bd(32, 0.0);
    for (size_t q = 0; q < 32; ++q)
      for (size_t k = 0; k < d; ++k) {
        const float v = x[q * d + k];
        XT[k * 32 + q] = v;
        const uint16_t b = sf::to_bf16(v);
        Xb[((k / 2) * 32 + q) * 2 + (k & 1)] = b;
        bn[q] += static_cast<double>(sf::from_bf16(b)) * sf::from_bf16(b);
        bd[q] += (static_cast<double>(v) - sf::from_bf16(b)) * (static_cast<double>(v) - sf::from_bf16(b));
      }
    const double gamma = 1.01 * static_cast<double>(d + 2) * 0x1p-24;
    std::vector<float> cA(32), cB(32, 0.0f), cC(32, 0.0f), absA(32), bnf(32), bdf(32), gm(32), e(32, 0.0f), lo(32);
    for (size_t q = 0; q < 32; ++q) {
      bnf[q] = static_cast<float>(std::sqrt(bn[q]) * (1 + 1e-12));
      bdf[q] = static_cast<float>(std::sqrt(bd[q]) * (1 + 1e-12));
      gm[q] = static_cast<float>(2 * gamma * (bnf[q] + bdf[q]));
    }
    std::vector<float> Sf(n * 32), Sb(n * 32), negU(n * 32);
    kt.dot_lanes(XT.data(), rs->rows(), n, d, Sf.data());
    dot(Xb.data(), rs->bf16_panels(), 0, n, dp, Sb.data());
    for (const float sign : {1.0f, -1.0f}) {  // L = +-S: the bound on both sides
      for (size_t q = 0; q < 32; ++q) {
        cA[q] = sign;
        absA[q] = 1.0f * (1 + 1e-5f);
      }
      const sf::ScreenLanes p{cA.data(), cB.data(), cC.data(), absA.data(), bnf.data(), bdf.data(), gm.data(), e.data()};
      std::vector<float> yy(n, 0.0f);
      g_context = "screen bound d=" + std::to_string(d) + (sign > 0 ? " upper" : " lower");
      CHECK(kt.screen_bounds(Sb.data(), n, yy.data(), rs->bf16_norms(), rs->bf16_errors(), p, negU.data(), lo.data()));
      bool within = true, useful = true;
      for (size_t i = 0; i < n * 32; ++i) {
        within = within && sign * Sf[i] <= -negU[i];
        // and not vacuous: D is a small multiple of the bf16 rounding, never the size of S itself
        useful = useful && (-negU[i] - sign * Sb[i]) < 0.05 * (bnf[i % 32] + bdf[i % 32]) * (rs->bf16_norms()[i / 32] + 1e-3);
      }
      CHECK(within);
      CHECK(useful);
    }
  }
}

int main() {
  std::setvbuf(stdout, nullptr, _IONBF, 0);  // a check that fails before an abort is still printed
  std::printf("simd levels available:");
  for (const std::string& l : sf::simd_available()) std::printf(" %s", l.c_str());
  std::printf("\n");
  test_philox_known_answers();
  test_first_nonfinite();
  test_project_column_ranges();
  test_kernels_every_level();
  test_panel_gemms_every_level();
  test_second_gemm_halves_every_level();
  test_softmax_running_max_every_level();
  test_bounds_cols_every_level();
  test_unsupported_level();
  test_targets_against_float64();
  test_convert_table();
  test_thread_count_invariance();
  test_dsm_loss_value();
  test_randn_properties();
  test_pool_exceptions_and_concurrency();
  test_overflow_checked();
  test_estimator_against_float64();
  test_estimator_partials_and_threads();
  test_estimator_groups();
  test_reference_set_exact_centring();
  test_steps();
  test_native_sampler();
  test_nonlinear_kernels();
  test_npy_header();
  test_pruning();
  test_bf16_screen();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
