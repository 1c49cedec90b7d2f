// The native end-to-end sampler over a reference set: every step of the Euler or Heun
// probability-flow ODE (with EDM churn) runs here, the denoiser being the estimator's
// posterior mean. It performs exactly the operations of the JavaScript samplers driven
// by ReferenceSet.estimate, so both give the same results.
#pragma once
#include <atomic>
#include <cstddef>
#include <functional>

#include "estimator.hpp"
#include "steps.hpp"

namespace sf {

struct SampleRequest {
  const double* sigmas = nullptr;  // decreasing grid (checked by the caller)
  size_t n_sigmas = 0;
  bool heun = true;
  size_t B = 0;
  float* x = nullptr;  // B x d: initial points in, samples out
  KernelSpec kernel;
  double s_churn = 0, s_tmin = 0, s_tmax = 1e300, s_noise = 1;
  NoiseSpec noise;  // seed / per-sample seeds / offset; step i's noise uses stream i + 1
  std::function<void(size_t done, size_t total)> progress;  // after every step, on this thread
  const std::atomic<bool>* abort = nullptr;                  // checked between evaluations
};

struct SampleStats {
  size_t nfe = 0;               // denoiser (estimator) evaluations
  double seconds = 0;           // the whole loop
  double estimator_seconds = 0; // inside the estimator
};

// Runs the loop. Throws sf::Error with code ERR_SCOREFIELD_ABORTED when abort is set.
SampleStats sample_reference(const ReferenceSet& ref, const SampleRequest& req, bool inline_ok);

}  // namespace sf
