// The estimator's kernels, each one named unit: its exact log-weight as a function of the
// squared distance r^2 (double), its normalising constant, and for the kernels that are linear
// in r^2 the coefficients and error model of the float tile form. The fused pass
// (estimator.cpp) and the pruned pass (prune.cpp) are written against these units only.
// Internal to the core: included by estimator.cpp and prune.cpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "estimator.hpp"
#include "kernels.hpp"

namespace sf {
namespace est {

constexpr double kU = 5.9604644775390625e-08;  // 2^-24, float32 unit roundoff
constexpr float kEmpty = -1e30f;               // log-weight of padded lanes
constexpr double kPi = 3.14159265358979323846;

// Index of the lowest set bit of a nonzero mask.
inline unsigned ctz32(uint32_t m) {
#if defined(__GNUC__)
  return static_cast<unsigned>(__builtin_ctz(m));
#else
  unsigned i = 0;
  while (!(m & 1u)) {
    m >>= 1;
    ++i;
  }
  return i;
#endif
}

// exp(x) for x <= 0 that is exactly 0 instead of a subnormal double (x < -700): weights that
// small are below anything a float output can show.
inline double exp_or_zero(double x) { return x < -700.0 ? 0.0 : std::exp(x); }

// ---------------------------------------------------------------------------------------
// Kernel units. A kernel is one struct with the same members:
//   kKind                      its NonlinearLanes code (0 for the GEMM-shaped Gaussian)
//   kLinear, kFusable, kRadial  the shape of its float tile form
//   constant(d, D)             the per-query constant kc its log-weight uses
//   log_norm(sigma, d, D)      its normalising constant (logDensity)
//   logw(r2, lane)             its exact log-weight as a function of r^2, in double
//   r2_window(r2, W, lane)     the largest r^2 whose log-weight is within W of logw(r2)
//   magnitudes_ok(a, xn, yn, sigma)  whether the float tile form stays in range
// plus, for kernels linear in r^2, the coefficients and error model of the float tile
// (initial_offset, coefs, tile, error_coefs). The fused pass (fused_pass.cpp), the pruned pass
// (prune.cpp), the partial states and the range checks are written against these members;
// visit_kernel() below is the one place that maps a KernelKind to its unit.

// One query's constants (double), shared by all kernels.
struct Lane {
  double alpha = 1, sigma = 1;
  double kc = 0;  // kernel constant: Poisson (d + D) / 2, radial d - 1
  double xx = 0;  // ||x - alpha c||^2 of the float centred query
  double nx = 0;  // its norm
  bool valid = false;
};

// l = -r^2 / (2 sigma^2).
struct GaussianKernel {
  static constexpr int kKind = 0;
  static constexpr bool kLinear = true;  // log-weight linear in r^2: GEMM-shaped tile form
  static constexpr bool kFusable = true;  // the tile form can be formed inside the softmax pass
  static constexpr bool kRadial = false;
  static double constant(size_t, double) { return 0.0; }
  static double log_norm(double sigma, size_t d, double) { return -0.5 * static_cast<double>(d) * std::log(2 * kPi * sigma * sigma); }
  static double logw(double r2, const Lane& q) { return -r2 / (2 * q.sigma * q.sigma); }
  static double r2_window(double r2, double window, const Lane& q) { return r2 + 2 * q.sigma * q.sigma * window; }
  // alpha x.y / sigma^2, alpha^2 ||y||^2 / (2 sigma^2) and ||x||^2 / (2 sigma^2) up to kLogWeightLimit
  static bool magnitudes_ok(double a, double xn, double yn, double sigma) {
    const double inv = 1.0 / (2 * sigma * sigma);
    return std::max({2 * a * xn * yn * inv, a * a * yn * yn * inv, xn * xn * inv}) <= kLogWeightLimit;
  }
  // Offset making the tile form shift-invariant before the first tile: l + xx/(2 s^2).
  static double initial_offset(const Lane& q) { return -q.xx / (2 * q.sigma * q.sigma); }
  // Coefficients of the tile form L = cA S + cB yy + cC, where S = x'.y' and the true
  // log-weight is -(xx - 2 alpha S + alpha^2 yy) / (2 s^2) - offset.
  static void coefs(const Lane& q, double offset, float* cA, float* cB, float* cC) {
    const double inv2 = 1.0 / (2 * q.sigma * q.sigma);
    *cA = static_cast<float>(2 * q.alpha * inv2);
    *cB = static_cast<float>(-q.alpha * q.alpha * inv2);
    *cC = static_cast<float>(-q.xx * inv2 - offset);
  }
  static void tile(const KernelTable& kt, float* S, size_t nt, const float* yy, const float* cA, const float* cB,
                   const float* cC, float* lane_max) {
    kt.logits_gauss(S, nt, yy, cA, cB, cC, lane_max, nullptr);
  }
  // Modelled error of the tile form for a pair: E = eA ny + eG amax + eB yy + eC, with
  // ny = ||y'||, amax = max_k |y'_k|. The float dot product x'.y' of d terms is modelled
  // as a random walk of roundings, gamma_scale sqrt(d) u ||x'|| max|y'| (Cauchy-Schwarz's
  // sqrt(d) u ||x'|| ||y'|| is 3-20x pessimistic on real data); the other terms bound the
  // rounding of the three-term sum (which cancels at small sigma) and of the result.
  static void error_coefs(const Lane& q, size_t d, double offset, double* eA, double* eG, double* eB, double* eC) {
    const double inv2 = 1.0 / (2 * q.sigma * q.sigma);
    const double a = 2 * std::fabs(q.alpha) * inv2 * q.nx;
    *eA = a * 2 * kU;
    *eG = a * precision_policy().gamma_scale * std::sqrt(static_cast<double>(d)) * kU;
    *eB = 2 * kU * q.alpha * q.alpha * inv2;
    *eC = 4 * kU * std::fabs(-q.xx * inv2 - offset) + 8 * kU;
  }
};

// Poisson flow (PFGM++ with D augmented dimensions; D = 1 is the gravity model):
// l = -((d + D)/2) log(r^2 + tau^2). Its float tile form is KernelTable::nonlinear_tile.
struct PoissonKernel {
  static constexpr int kKind = 1;
  static constexpr bool kLinear = false;
  static constexpr bool kFusable = false;
  static constexpr bool kRadial = false;
  static double constant(size_t d, double D) { return 0.5 * (static_cast<double>(d) + D); }
  // log C_{d,D} r^D with C = Gamma((d+D)/2) / (pi^(d/2) Gamma(D/2)).
  static double log_norm(double r, size_t d, double D) {
    return std::lgamma(0.5 * (static_cast<double>(d) + D)) - 0.5 * static_cast<double>(d) * std::log(kPi) -
           std::lgamma(0.5 * D) + D * std::log(r);
  }
  static double logw(double r2, const Lane& q) { return -q.kc * std::log(r2 + q.sigma * q.sigma); }
  static double r2_window(double r2, double window, const Lane& q) {
    if (!(q.kc > 0) || window / q.kc > 700) return std::numeric_limits<double>::infinity();
    const double s2 = q.sigma * q.sigma;
    return (r2 + s2) * std::exp(window / q.kc) - s2;
  }
  // r^2 / tau^2 up to 1e72 (the tile takes r^2 relative to a reference within 1e37 of both ends)
  static bool magnitudes_ok(double a, double xn, double yn, double sigma) {
    const double r = xn + a * yn;
    return r * r / (sigma * sigma) <= 1e72;
  }
};

// Radial CDF scale families psi_t(r) = F(r/t): l = log F'(r/t) - (d-1) log r, with F = tanh
// or 1 - exp(-u), r clamped below at kRadialFloor * t.
template <bool kTanh>
struct RadialKernel {
  static constexpr int kKind = kTanh ? 2 : 3;
  static constexpr bool kLinear = false;
  static constexpr bool kFusable = false;
  static constexpr bool kRadial = true;
  static double constant(size_t d, double) { return static_cast<double>(d) - 1.0; }
  // -log t - log |S^(d-1)|, |S^(d-1)| = 2 pi^(d/2) / Gamma(d/2): p(x|y) = F'(r/t) / (t |S| r^(d-1)).
  static double log_norm(double t, size_t d, double) {
    const double h = 0.5 * static_cast<double>(d);
    return -std::log(t) - (std::log(2.0) + h * std::log(kPi) - std::lgamma(h));
  }
  static double log_fprime(double u) {
    if (kTanh) return -2.0 * (u + std::log1p(exp_or_zero(-2.0 * u)) - std::log(2.0));  // log sech^2 u
    return -u;                                                                        // log e^-u
  }
  static double logw(double r2, const Lane& q) {
    const double r = std::max(std::sqrt(std::max(r2, 0.0)), kRadialFloor * q.sigma);
    return log_fprime(r / q.sigma) - q.kc * std::log(r);
  }
  // The log-weight is non-increasing in r^2: bracket, then bisect.
  static double r2_window(double r2, double window, const Lane& q) {
    const double target = logw(r2, q) - window;
    double lo = std::max(r2, 0.0), hi = std::max(lo * 2, q.sigma * q.sigma);
    for (int i = 0; i < 2100 && logw(hi, q) >= target; ++i) {
      lo = hi;
      hi *= 2;
      if (!(hi < 1e300)) return std::numeric_limits<double>::infinity();
    }
    for (int i = 0; i < 100 && hi - lo > 1e-12 * hi; ++i) {
      const double mid = 0.5 * (lo + hi);
      if (logw(mid, q) >= target) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    return hi;
  }
  // r / t up to kLogWeightLimit
  static bool magnitudes_ok(double a, double xn, double yn, double sigma) {
    const double r = xn + a * yn;
    return r * r / (sigma * sigma) <= kLogWeightLimit * kLogWeightLimit;
  }
};

// The registry: calls f with the unit of `kind`. Adding a kernel is a new unit above, its
// KernelKind value, a line here, and its JavaScript kernel object (lib/kernels.ts).
template <class F>
decltype(auto) visit_kernel(KernelKind kind, F&& f) {
  switch (kind) {
    case KernelKind::Poisson: return f(PoissonKernel{});
    case KernelKind::RadialTanh: return f(RadialKernel<true>{});
    case KernelKind::RadialExp: return f(RadialKernel<false>{});
    case KernelKind::Gaussian: break;
  }
  return f(GaussianKernel{});
}

inline double kernel_constant(const KernelSpec& k, size_t d) {
  return visit_kernel(k.kind, [&](auto unit) { return decltype(unit)::constant(d, k.D); });
}

// A query's constants, all that the kernels' logw and r2_window read.
inline Lane lane_constants(const EstimateRequest& req, size_t q, size_t d) {
  Lane l;
  l.alpha = req.alpha.at(q);
  l.sigma = req.sigma.at(q);
  l.kc = kernel_constant(req.kernel, d);
  l.valid = true;
  return l;
}

// A query's lane: its constants, and its float coordinates x' = x - alpha centre into xrow.
inline Lane make_lane(const EstimateRequest& req, size_t q, const float* c, size_t d, float* xrow) {
  Lane l = lane_constants(req, q, d);
  const float* x = req.x + q * d;
  double s = 0;
  for (size_t k = 0; k < d; ++k) {
    const float t = static_cast<float>(x[k] - l.alpha * c[k]);
    xrow[k] = t;
    s += static_cast<double>(t) * t;
  }
  l.xx = s;
  l.nx = std::sqrt(s);
  return l;
}

}  // namespace est
}  // namespace sf
