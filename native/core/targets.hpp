// Batched Gaussian score targets (docs/math.md section 1). Arrays are row-major B x d float32;
// per-sample coefficients are either one value for the batch or an array of length B.
// Shapes and coefficient values are validated by the callers (lib/ and the binding);
// these functions only compute. `inline_ok` is true for synchronous calls (see ThreadPool).
#pragma once
#include <cstddef>
#include <cstdint>

namespace sf {

// A per-sample coefficient: per[i] when per is set, otherwise value.
struct Coef {
  const float* per = nullptr;
  double value = 0.0;
  double at(size_t i) const { return per ? static_cast<double>(per[i]) : value; }
  bool uniform() const { return per == nullptr; }
};

enum class Param { Eps = 0, X0 = 1, V = 2, Score = 3 };

// Elements per chunk: the unit of parallel work. Fixed, so results never depend on the
// number of threads.
inline constexpr size_t kChunkElems = size_t{1} << 15;

// out = alpha * x0 + sigma * eps
void perturb(float* out, const float* x0, const float* eps, size_t B, size_t d, Coef alpha,
             Coef sigma, bool inline_ok);

// out = -(x - alpha * x0) / sigma^2
void conditional_score(float* out, const float* x, const float* x0, size_t B, size_t d,
                       Coef alpha, Coef sigma, bool inline_ok);

// Converts a model output of one parameterisation into another at (x, alpha, sigma).
void convert(Param from, Param to, float* out, const float* model, const float* x, size_t B,
             size_t d, Coef alpha, Coef sigma, bool inline_ok);

// Flow-matching velocity target: out = dalpha * x0 + dsigma * eps
void velocity_target(float* out, const float* x0, const float* eps, size_t B, size_t d,
                     Coef dalpha, Coef dsigma, bool inline_ok);

// L = (1/B) sum_i weight_i ||pred_i - target_i||^2; when grad is not null it receives
// dL/dpred = (2 weight_i / B)(pred_i - target_i). Returns L (summed in double in a fixed
// order).
double dsm_loss(const float* pred, const float* target, size_t B, size_t d, Coef weight,
                float* grad, bool inline_ok);

// Standard normal noise: row i of out (global sample index offset + i) gets
// normal(seed, stream, offset + i, k) for k < d.
void randn(float* out, size_t B, size_t d, uint64_t seed, uint32_t stream, uint64_t offset,
           bool inline_ok);

// STREAM-style triad a = b + s * c, compiled for the baseline instruction set: the
// benchmark's measure of the machine's streaming bandwidth.
void stream_triad(float* a, const float* b, const float* c, float s, size_t n, bool inline_ok);

// Benchmark probes, run on every pool thread at once; both return seconds elapsed.
// FMA peak: threads x iters x 12 x lanes x 2 flops. Exp rate: threads x reps x n exps.
double probe_fma_peak(size_t iters, bool inline_ok);
double probe_exp_rate(size_t n, size_t reps, bool inline_ok);

}  // namespace sf
