// libFuzzer target: reference sets and the estimator with arbitrary shapes, kernels and
// values (raw bit patterns, or finite values at any scale), plus partial states and the
// stable targets. Contract: results or sf::Error, no memory error or undefined behaviour,
// and finite data give finite mean/ess within [1, N].
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "errors.hpp"
#include "estimator.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sffuzz::Input in(data, size);
  const size_t n = 1 + in.byte() % 48;
  const size_t d = 1 + in.byte() % 40;
  const size_t B = in.byte() % 12;
  const uint8_t mode = in.byte();
  sf::EstimateRequest req;
  req.kernel.kind = static_cast<sf::KernelKind>(mode % 4);
  req.kernel.D = in.positive(1e-3, 1e7);
  const bool raw = (mode & 0x10) != 0;
  const float scale = static_cast<float>(in.positive(1e-6, 1e6));
  std::vector<float> sig(B), alp(B);
  for (size_t q = 0; q < B; ++q) {
    sig[q] = static_cast<float>(in.positive(1e-6, 1e6));
    alp[q] = req.kernel.kind == sf::KernelKind::Gaussian ? static_cast<float>(in.positive(1e-3, 1e3)) : 1.0f;
  }
  if (mode & 0x20) {
    req.sigma.per = sig.data();
    req.alpha.per = alp.data();
  } else {
    req.sigma.value = B ? sig[0] : 1.0;
    req.alpha.value = B ? alp[0] : 1.0;
  }
  const std::vector<float> Y = raw ? in.floats(n * d) : in.finite_floats(n * d, scale);
  const std::vector<float> X = raw ? in.floats(B * d) : in.finite_floats(B * d, scale);
  req.x = X.data();
  req.B = B;
  try {
    auto ref = sf::ReferenceSet::build(Y.data(), n, d, true, (mode & 0x40) == 0);  // with or without row panels
    std::vector<float> mean(B * d), score(B * d), logd(B), ess(B), tr(B), div(B);
    sf::EstimateOutputs out;
    out.mean = mean.data();
    out.log_density = logd.data();
    out.ess = ess.data();
    out.trace_cov = tr.data();
    if (req.kernel.kind == sf::KernelKind::Gaussian) {
      out.score = score.data();
      out.divergence = div.data();
    }
    sf::estimate(*ref, req, out, true);
    for (size_t q = 0; q < B; ++q) {
      bool bad = !std::isfinite(ess[q]) || ess[q] < 0.999f || ess[q] > static_cast<float>(n) * 1.001f;
      for (size_t k = 0; k < d; ++k) bad = bad || !std::isfinite(mean[q * d + k]);
      if (bad) {
        std::fprintf(stderr, "kernel %d n %zu d %zu B %zu query %zu: sigma %g alpha %g D %g scale %g ess %g mean[0] %g logd %g\n",
                     static_cast<int>(req.kernel.kind), n, d, B, q, req.sigma.at(q), req.alpha.at(q), req.kernel.D, scale,
                     ess[q], mean[q * d], logd[q]);
        std::abort();
      }
    }
    // shards merge to the same state shape
    sf::EstimateRequest a = req, b = req;
    a.begin = 0;
    a.end = n / 2;
    b.begin = n / 2;
    b.end = n;
    sf::PartialState s0 = sf::estimate_partial(*ref, a, true);
    const sf::PartialState s1 = sf::estimate_partial(*ref, b, true);
    sf::merge_partial(s0, s1);
    if (s0.B != B) std::abort();
    if (req.kernel.kind == sf::KernelKind::Gaussian && B > 0) {
      std::vector<float> st(B * d);
      sf::stable_targets(*ref, X.data(), req, st.data(), true);  // the queries as their own clean points
    }
  } catch (const sf::Error&) {
  }
  return 0;
}
