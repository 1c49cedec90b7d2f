#include "sample.hpp"

#include <chrono>
#include <cmath>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "limits.hpp"

namespace sf {

SampleStats sample_reference(const ReferenceSet& ref, const SampleRequest& req, bool inline_ok) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  double est = 0;
  const size_t d = ref.dim(), B = req.B;
  const size_t n = checked_mul(B, d, "batch x dim");
  const size_t steps = req.n_sigmas - 1;
  check_memory(checked_mul(n, 4 * sizeof(float), "the sampler's buffers") + estimate_scratch_bytes(ref, B, true),
               "the sampler's buffers and the estimator's working memory");
  std::vector<float> D(n), xp(n), D2(n), tmp(n);
  float* x = req.x;
  size_t nfe = 0;
  auto check = [&] {
    if (req.abort && req.abort->load(std::memory_order_relaxed)) throw Error(code::kAborted, "The sampler was aborted");
  };
  auto denoise = [&](const float* at, double sigma, float* out) {
    check();
    EstimateRequest r;
    r.x = at;
    r.B = B;
    r.sigma = Coef{nullptr, sigma};
    r.kernel = req.kernel;
    EstimateOutputs o;
    o.mean = out;
    const auto t0 = clock::now();
    estimate(ref, r, o, inline_ok);
    est += std::chrono::duration<double>(clock::now() - t0).count();
    ++nfe;
  };
  for (size_t i = 0; i < steps; ++i) {
    double s = req.sigmas[i];
    const double next = req.sigmas[i + 1];
    const double gamma = (req.s_churn > 0 && s >= req.s_tmin && s <= req.s_tmax)
                             ? std::min(req.s_churn / static_cast<double>(steps), std::sqrt(2.0) - 1.0)
                             : 0.0;
    if (gamma > 0) {
      const double hat = s * (1 + gamma);
      NoiseSpec z = req.noise;
      z.stream = static_cast<uint32_t>(i + 1);
      churn_step(tmp.data(), x, B, d, Coef{nullptr, s}, Coef{nullptr, hat}, req.s_noise, z, inline_ok);
      std::copy(tmp.begin(), tmp.end(), x);
      s = hat;
    }
    denoise(x, s, D.data());
    euler_step(xp.data(), x, D.data(), B, d, Coef{nullptr, s}, Coef{nullptr, next}, inline_ok);
    if (req.heun && next > 0) {
      denoise(xp.data(), next, D2.data());
      heun_correct(x, x, D.data(), xp.data(), D2.data(), B, d, Coef{nullptr, s}, Coef{nullptr, next}, inline_ok);
    } else {
      std::copy(xp.begin(), xp.end(), x);
    }
    if (req.progress) req.progress(i + 1, steps);
  }
  SampleStats st;
  st.nfe = nfe;
  st.seconds = std::chrono::duration<double>(clock::now() - start).count();
  st.estimator_seconds = est;
  return st;
}

}  // namespace sf
