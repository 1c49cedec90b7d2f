// Probability-flow ODE and SDE steps (docs/math.md section 3), batched, per-sample noise levels,
// in the EDM denoiser form dx/ds = (x - D(x; s)) / s over a decreasing grid of s.
#pragma once
#include <cstddef>
#include <cstdint>

#include "targets.hpp"

namespace sf {

// Seeded standard normal noise for step noise: sample i uses key seeds[i] (sample index 0)
// when seeds is set, otherwise key seed and sample index offset + i; `stream` separates
// steps.
struct NoiseSpec {
  uint64_t seed = 0;
  const uint64_t* seeds = nullptr;
  uint32_t stream = 0;
  uint64_t offset = 0;
};

// Fills out (B x d) with the noise of NoiseSpec.
void noise(float* out, size_t B, size_t d, const NoiseSpec& spec, bool inline_ok);

// out = x + (s_next - s) (x - D) / s. With s_next = 0 this is out = D.
void euler_step(float* out, const float* x, const float* D, size_t B, size_t d, Coef s, Coef s_next, bool inline_ok);

// Heun's correction: out = x + (h / 2) ((x - D) / s + (xp - Dp) / s_next), h = s_next - s,
// where xp = euler_step(x) and Dp = D(xp; s_next). Where s_next = 0 the step is Euler's:
// out = xp.
void heun_correct(float* out, const float* x, const float* D, const float* xp, const float* Dp, size_t B, size_t d,
                  Coef s, Coef s_next, bool inline_ok);

// Reverse-SDE Euler-Maruyama step in s:
//   out = x + (1 - s_next^2 / s^2) (D - x) + sqrt(s^2 - s_next^2) z,
// i.e. x + (s^2 - s_next^2) score + sqrt(s^2 - s_next^2) z with score = (D - x) / s^2.
void euler_maruyama_step(float* out, const float* x, const float* D, size_t B, size_t d, Coef s, Coef s_next,
                         const NoiseSpec& z, bool inline_ok);

// Langevin step at noise level s with step size eta: out = x + eta (D - x) / s^2 + sqrt(2 eta) z.
void langevin_step(float* out, const float* x, const float* D, size_t B, size_t d, Coef s, Coef eta,
                   const NoiseSpec& z, bool inline_ok);

// EDM stochastic churn: out = x + sqrt(s_hat^2 - s^2) s_noise z.
void churn_step(float* out, const float* x, size_t B, size_t d, Coef s, Coef s_hat, double s_noise,
                const NoiseSpec& z, bool inline_ok);

}  // namespace sf
