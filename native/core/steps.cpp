#include "steps.hpp"

#include <cmath>

#include "philox.hpp"
#include "rows.hpp"

namespace sf {

void noise(float* out, size_t B, size_t d, const NoiseSpec& spec, bool inline_ok) {
  if (!spec.seeds) {
    randn(out, B, d, spec.seed, spec.stream, spec.offset, inline_ok);
    return;
  }
  if (d > (size_t{1} << 33)) throw Error(code::kRange, "Expected at most 2^33 for dim but received more");
  rows::each(B, d, [&](size_t row, size_t s, size_t e) {
    const uint64_t key = spec.seeds[row];
    const size_t k0 = s - row * d;
    double z[2] = {0.0, 0.0};
    for (size_t k = k0; s < e; ++s, ++k) {
      // a new pair at every even coordinate, and at the piece's first one
      if (k == k0 || (k & 1) == 0) philox_normal_pair(key, spec.stream, 0, static_cast<uint32_t>(k >> 1), &z[0], &z[1]);
      out[s] = static_cast<float>(z[k & 1]);
    }
  }, inline_ok);
}

namespace {
// k-diffusion's to_d, named once: the probability-flow ODE's derivative in the denoiser form,
// dx/ds = (x - D(x; s)) / s. A step of size h moves x by h (x - D) / s; this is that step's
// coefficient h / s of (x - D), so every stepper is a combination of x and D with it.
inline double to_d(double h, double s) { return h / s; }
}  // namespace

void euler_step(float* out, const float* x, const float* D, size_t B, size_t d, Coef s, Coef s_next, bool inline_ok) {
  const KernelTable& kt = kernels();
  rows::each(B, d, [&](size_t row, size_t b, size_t e) {
    const double si = s.at(row), h = s_next.at(row) - si;
    const double a = to_d(h, si);  // x + h d = x + a (x - D) = (1 + a) x - a D
    kt.combine(out + b, x + b, D + b, e - b, 1.0f, static_cast<float>(1.0 + a), static_cast<float>(-a));
  }, inline_ok);
}

void heun_correct(float* out, const float* x, const float* D, const float* xp, const float* Dp, size_t B, size_t d,
                  Coef s, Coef s_next, bool inline_ok) {
  const KernelTable& kt = kernels();
  rows::each(B, d, [&](size_t row, size_t b, size_t e) {
    const double si = s.at(row), sn = s_next.at(row);
    if (sn == 0.0) {  // the last step onto s = 0 is Euler's
      if (out != xp) for (size_t k = b; k < e; ++k) out[k] = xp[k];
      return;
    }
    const double g = 0.5 * (sn - si);  // x + (h/2)(d + d') with d at (x, s), d' at (xp, s_next)
    const double a = to_d(g, si), c = to_d(g, sn);
    kt.combine4(out + b, x + b, D + b, xp + b, Dp + b, e - b, static_cast<float>(1.0 + a), static_cast<float>(-a),
                static_cast<float>(c), static_cast<float>(-c));
  }, inline_ok);
}

namespace {
// out = c0 x + c1 D + c2 z after z was drawn into out.
template <class Coefs>
void with_noise(float* out, const float* x, const float* D, size_t B, size_t d, const NoiseSpec& z, Coefs coefs,
                bool inline_ok) {
  noise(out, B, d, z, inline_ok);
  const KernelTable& kt = kernels();
  rows::each(B, d, [&](size_t row, size_t b, size_t e) {
    double c0, c1, c2;
    coefs(row, &c0, &c1, &c2);
    kt.combine4(out + b, x + b, D ? D + b : x + b, out + b, out + b, e - b, static_cast<float>(c0),
                static_cast<float>(c1), static_cast<float>(c2), 0.0f);
  }, inline_ok);
}
}  // namespace

void euler_maruyama_step(float* out, const float* x, const float* D, size_t B, size_t d, Coef s, Coef s_next,
                         const NoiseSpec& z, bool inline_ok) {
  with_noise(out, x, D, B, d, z, [&](size_t row, double* c0, double* c1, double* c2) {
    const double si = s.at(row), sn = s_next.at(row);
    const double f = 1.0 - (sn * sn) / (si * si);
    *c0 = 1.0 - f;
    *c1 = f;
    *c2 = std::sqrt(std::max(0.0, si * si - sn * sn));
  }, inline_ok);
}

void langevin_step(float* out, const float* x, const float* D, size_t B, size_t d, Coef s, Coef eta,
                   const NoiseSpec& z, bool inline_ok) {
  with_noise(out, x, D, B, d, z, [&](size_t row, double* c0, double* c1, double* c2) {
    const double si = s.at(row), et = eta.at(row);
    const double f = et / (si * si);
    *c0 = 1.0 - f;
    *c1 = f;
    *c2 = std::sqrt(2.0 * et);
  }, inline_ok);
}

void churn_step(float* out, const float* x, size_t B, size_t d, Coef s, Coef s_hat, double s_noise, const NoiseSpec& z,
                bool inline_ok) {
  with_noise(out, x, nullptr, B, d, z, [&](size_t row, double* c0, double* c1, double* c2) {
    const double si = s.at(row), sh = s_hat.at(row);
    *c0 = 1.0;
    *c1 = 0.0;
    *c2 = std::sqrt(std::max(0.0, sh * sh - si * si)) * s_noise;
  }, inline_ok);
}

}  // namespace sf
