// Partial states (estimator.hpp): the empty state, the exact merge of two states and the
// outputs of a (merged) state.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "engine.hpp"
#include "errors.hpp"
#include "estimator_kernels.hpp"
#include "finite.hpp"
#include "limits.hpp"
#include "thread_pool.hpp"

namespace sf {
using namespace est;

PartialState empty_state(const ReferenceSet& ref, size_t B, bool ws) {
  PartialState st;
  st.B = B;
  st.d = ref.dim();
  st.origin.assign(ref.centre(), ref.centre() + ref.dim());
  st.max.assign(B, -std::numeric_limits<double>::infinity());
  st.sum.assign(B, 0.0);
  st.sumsq.assign(B, 0.0);
  st.sumyy.assign(B, 0.0);
  if (ws) st.acc.assign(checked_mul(B, ref.dim(), "batch x dim"), 0.0);
  return st;
}

void merge_partial(PartialState& into, const PartialState& o) {
  if (into.B != o.B || into.d != o.d || (into.acc.empty() != o.acc.empty())) {
    throw Error(code::kShape, "Expected partial states of the same batch, dim and outputs for mergePartials but received different ones");
  }
  const size_t d = into.d;
  // o's coordinates are relative to o.origin; move them to into.origin: y - a = (y - b) + (b - a).
  std::vector<double> delta(d);
  double dd = 0;
  for (size_t k = 0; k < d; ++k) {
    delta[k] = o.origin[k] - into.origin[k];
    dd += delta[k] * delta[k];
  }
  const bool shift = dd != 0.0;
  for (size_t q = 0; q < into.B; ++q) {
    if (o.sum[q] == 0.0) continue;
    const double m = std::max(into.max[q], o.max[q]);
    const double a = into.sum[q] == 0.0 ? 0.0 : exp_or_zero(into.max[q] - m);
    const double b = exp_or_zero(o.max[q] - m);
    double oyy = o.sumyy[q];
    if (shift && !o.acc.empty()) {
      double cross = 0;
      for (size_t k = 0; k < d; ++k) cross += delta[k] * o.acc[q * d + k];
      oyy += 2 * cross + dd * o.sum[q];
    }
    into.max[q] = m;
    into.sum[q] = a * into.sum[q] + b * o.sum[q];
    into.sumsq[q] = a * a * into.sumsq[q] + b * b * o.sumsq[q];
    into.sumyy[q] = a * into.sumyy[q] + b * oyy;
    if (!into.acc.empty()) {
      double* x = into.acc.data() + q * d;
      const double* y = o.acc.data() + q * d;
      for (size_t k = 0; k < d; ++k) x[k] = a * x[k] + b * (y[k] + (shift ? delta[k] * o.sum[q] : 0.0));
    }
  }
  into.count += o.count;
}

void finalize_query(const QueryState& s, const double* origin, size_t d, const float* xq, double al, double sg,
                    KernelSpec kernel, double log_n, const EstimateOutputs& out, size_t q, double* m) {
  const double s0 = s.sum, inv_s0 = 1.0 / s0;
  double mm = 0;
  if (s.acc) {
    for (size_t k = 0; k < d; ++k) m[k] = s.acc[k] * inv_s0;
    double m0 = 0, m1 = 0, m2 = 0, m3 = 0;  // four chains: the sum is not one long dependency
    size_t k = 0;
    for (; k + 4 <= d; k += 4) {
      m0 += m[k] * m[k];
      m1 += m[k + 1] * m[k + 1];
      m2 += m[k + 2] * m[k + 2];
      m3 += m[k + 3] * m[k + 3];
    }
    for (; k < d; ++k) m0 += m[k] * m[k];
    mm = (m0 + m1) + (m2 + m3);
  }
  const double trace = std::max(0.0, s.sumyy / s0 - mm);
  if (out.mean) {
    float* o = out.mean + q * d;
    for (size_t k = 0; k < d; ++k) o[k] = static_cast<float>(origin[k] + m[k]);
  }
  if (out.score) {
    // (alpha m - x) / s^2 with m and x relative to the origin: no cancellation of large values.
    const double inv = 1.0 / (sg * sg);
    float* o = out.score + q * d;
    for (size_t k = 0; k < d; ++k) o[k] = static_cast<float>((al * m[k] - (static_cast<double>(xq[k]) - al * origin[k])) * inv);
  }
  const double norm = visit_kernel(kernel.kind, [&](auto unit) { return decltype(unit)::log_norm(sg, d, kernel.D); });
  if (out.log_density) out.log_density[q] = static_cast<float>(s.max + std::log(s0) + norm - log_n);
  if (out.ess) out.ess[q] = static_cast<float>(s0 * s0 / s.sumsq);
  if (out.trace_cov) out.trace_cov[q] = static_cast<float>(trace);
  if (out.divergence) out.divergence[q] = static_cast<float>((al * al * trace / (sg * sg) - static_cast<double>(d)) / (sg * sg));
}

QueryState state_row(const PartialState& st, size_t q) {
  QueryState s;
  s.max = st.max[q];
  s.sum = st.sum[q];
  s.sumsq = st.sumsq[q];
  s.sumyy = st.sumyy[q];
  s.acc = st.acc.empty() ? nullptr : st.acc.data() + q * st.d;
  return s;
}

void check_outputs(const EstimateOutputs& out, size_t B, size_t d, Coef sigma) {
  // The first query with an output that is not finite (extreme but valid inputs: a kernel
  // parameter or noise level beyond what the float32 results can hold): a coded error, never
  // a silent NaN. Outputs are checked after they are written, in one vectorised scan each.
  size_t bad_q = B;
  const char* bad_what = "";
  const auto scan = [&](const float* v, size_t per_query, const char* what) {
    if (!v) return;
    const size_t n = B * per_query, i = kernels().first_nonfinite(v, n);
    if (i != n && i / per_query < bad_q) {  // ties keep the earlier output
      bad_q = i / per_query;
      bad_what = what;
    }
  };
  scan(out.mean, d, "mean");
  scan(out.score, d, "score");
  scan(out.log_density, 1, "logDensity");
  scan(out.ess, 1, "ess");
  scan(out.trace_cov, 1, "traceCov");
  scan(out.divergence, 1, "divergence");
  if (bad_q != B) {
    throw Error(code::kRange, std::string("Expected inputs whose ") + bad_what + " is finite in float32 but query " +
                                  std::to_string(bad_q) + "'s is not (sigma " + num(sigma.at(bad_q)) +
                                  "): the noise level or kernel parameter is beyond what the results can represent");
  }
}

void finalize_partial(const PartialState& st, const float* x, Coef alpha, Coef sigma, KernelSpec kernel,
                      EstimateOutputs out, bool inline_ok) {
  const size_t d = st.d;
  if (st.B > 0 && !(st.count > 0)) {
    throw Error(code::kRange, "Expected a partial state covering at least one reference for state but received one over no "
                              "references (an empty shard: merge it with others before finalising)");
  }
  const double log_n = std::log(std::max(st.count, 1.0));
  for_query_groups(st.B, d, inline_ok, [&](size_t q, double* m) {
    finalize_query(state_row(st, q), st.origin.data(), d, x + q * d, alpha.at(q), sigma.at(q), kernel, log_n, out, q, m);
  });
  check_outputs(out, st.B, d, sigma);
}

void for_query_groups(size_t n, size_t d, bool inline_ok, const std::function<void(size_t, double*)>& f) {
  constexpr size_t kGroup = 16;
  ThreadPool::global().parallel_for((n + kGroup - 1) / kGroup, [&](size_t gi) {
    std::vector<double> scratch(d);
    for (size_t i = gi * kGroup; i < std::min(n, (gi + 1) * kGroup); ++i) f(i, scratch.data());
  }, inline_ok);
}

}  // namespace sf
