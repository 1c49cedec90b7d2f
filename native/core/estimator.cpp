#include "estimator.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dispatch.hpp"
#include "engine.hpp"
#include "estimator_kernels.hpp"
#include "errors.hpp"
#include "finite.hpp"
#include "limits.hpp"
#include "prune.hpp"
#include "thread_pool.hpp"

namespace sf {
using namespace est;

namespace {
std::atomic<bool> g_pruning{true};
}  // namespace

void set_pruning(bool on) { g_pruning.store(on, std::memory_order_relaxed); }
bool pruning() { return g_pruning.load(std::memory_order_relaxed); }

PrecisionPolicy& precision_policy() {
  static PrecisionPolicy p;
  return p;
}


// The float32 tile forms stay finite and clear of the padded-lane mark only while their terms
// do: r^2 (about the centre) up to kMagnitudeLimit, and each kernel's own terms
// (KernelUnit::magnitudes_ok, estimator_kernels.hpp). Outside that range (data near 1e18, or sigma far below
// the float32 resolution of the data) the request gets a coded error instead of inf/NaN.
static void check_magnitudes(const ReferenceSet& ref, const EstimateRequest& req) {
  const size_t d = ref.dim();
  const float* c = ref.centre();
  const double yn = ref.max_norm();
  for (size_t q = 0; q < req.B; ++q) {
    // the query as the tiles see it: x' = x - alpha centre (make_lane)
    const double alpha = req.alpha.at(q);
    const double xx = centred_sq(req.x + q * d, c, alpha, d);
    const double a = std::fabs(alpha), sg = req.sigma.at(q);
    const double xn = std::sqrt(xx);
    const double r2max = (xn + a * yn) * (xn + a * yn);
    bool ok = r2max <= kMagnitudeLimit;
    ok = ok && visit_kernel(req.kernel.kind, [&](auto unit) { return decltype(unit)::magnitudes_ok(a, xn, yn, sg); });
    if (!ok) {
      throw Error(code::kRange, "Expected sigma large enough for the magnitude of query " + std::to_string(q) +
                                    " and the data (float32 log-weights, see README: Reliability) but received sigma " +
                                    num(sg) + " with |x - alpha centre| = " + num(xn) +
                                    " and max |y - centre| = " + num(yn));
    }
  }
}

namespace {

// Exact pruning first (prune.hpp); the queries it hands back run the fused pass as one
// smaller batch (or as the whole request when it finished none), and the states are put
// together in query order.
PartialState pruned_partial(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req, size_t begin,
                            size_t end, bool inline_ok, EstimateStats* stats) {
  const size_t d = ref.dim();
  PrunedRows pr;
  PruneStats ps;
  pruned_pass(ref, px, req, begin, end, pr, &ps, inline_ok);
  if (stats) {
    stats->exact_pairs += ps.exact_pairs;
    stats->sparse_queries += ps.sparse_queries;
    stats->decide_ns += ps.decide_ns;
  }
  if (pr.query.empty()) return fused_partial(ref, req, begin, end, inline_ok, stats);
  if (pr.query.size() == req.B) {  // every query finished (in query order): the rows are the state
    PartialState st;
    st.B = req.B;
    st.d = d;
    st.count = static_cast<double>(end - begin);
    st.origin.assign(ref.centre(), ref.centre() + d);
    st.max = std::move(pr.max);
    st.sum = std::move(pr.sum);
    st.sumsq = std::move(pr.sumsq);
    st.sumyy = std::move(pr.sumyy);
    st.acc = std::move(pr.acc);
    return st;
  }
  PartialState st = empty_state(ref, req.B, req.weighted_sum);
  st.count = static_cast<double>(end - begin);
  // row i of a compact state (the pruned rows, or the fused pass's sub-batch) into query g
  const auto put = [&](size_t g, size_t i, const auto& from) {
    st.max[g] = from.max[i];
    st.sum[g] = from.sum[i];
    st.sumsq[g] = from.sumsq[i];
    st.sumyy[g] = from.sumyy[i];
    if (!st.acc.empty()) std::copy(from.acc.begin() + i * d, from.acc.begin() + (i + 1) * d, st.acc.begin() + g * d);
  };
  std::vector<char> dense(req.B, 1);
  for (size_t i = 0; i < pr.query.size(); ++i) {
    dense[pr.query[i]] = 0;
    put(pr.query[i], i, pr);
  }
  std::vector<size_t> ids;
  for (size_t q = 0; q < req.B; ++q)
    if (dense[q]) ids.push_back(q);
  if (ids.empty()) return st;
  EstimateRequest sub = req;
  sub.B = ids.size();
  std::vector<float> x(sub.B * d), al, sg;
  for (size_t i = 0; i < sub.B; ++i) std::copy(req.x + ids[i] * d, req.x + (ids[i] + 1) * d, x.begin() + i * d);
  sub.x = x.data();
  if (!req.alpha.uniform()) {
    for (size_t q : ids) al.push_back(req.alpha.per[q]);
    sub.alpha.per = al.data();
  }
  if (!req.sigma.uniform()) {
    for (size_t q : ids) sg.push_back(req.sigma.per[q]);
    sub.sigma.per = sg.data();
  }
  const PartialState ds = fused_partial(ref, sub, begin, end, inline_ok, stats);
  for (size_t i = 0; i < ids.size(); ++i) put(ids[i], i, ds);
  return st;
}

}  // namespace

PartialState estimate_partial(const ReferenceSet& ref, const EstimateRequest& req, bool inline_ok, EstimateStats* stats) {
  const size_t begin = std::min(req.begin, ref.size());
  const size_t end = std::min(req.end, ref.size());
  if (begin > end) throw Error(code::kRange, "Expected begin <= end for the reference range but received begin > end");
  checked_mul(req.B, ref.dim(), "batch x dim");
  if (req.B == 0 || begin == end) {
    PartialState st = empty_state(ref, req.B, req.weighted_sum);
    return st;
  }
  check_memory(estimate_scratch_bytes(ref, req.B, req.weighted_sum), "the estimator's working memory");
  if (const size_t i = first_nonfinite(req.x, req.B * ref.dim()); i != req.B * ref.dim()) {
    throw Error(code::kRange, "Expected finite values for x but received a non-finite value at index " + std::to_string(i));
  }
  for (size_t q = 0; q < req.B; ++q) {  // the last line of defence behind lib/'s validation
    const double sg = req.sigma.at(q), al = req.alpha.at(q);
    if (!(sg > 0) || !std::isfinite(sg) || !std::isfinite(al)) {
      throw Error(code::kRange, "Expected a finite sigma > 0 and a finite alpha for query " + std::to_string(q) +
                                    " but received sigma " + num(sg) + ", alpha " + num(al));
    }
  }
  check_magnitudes(ref, req);
  if (stats) stats->pairs += static_cast<uint64_t>(req.B) * (end - begin);
  const PruneIndex* px = ref.prune_index();
  if (px && pruning() && end - begin >= kPruneMinRows) {
    return pruned_partial(ref, *px, req, begin, end, inline_ok, stats);
  }
  return fused_partial(ref, req, begin, end, inline_ok, stats);
}

void estimate(const ReferenceSet& ref, const EstimateRequest& req, EstimateOutputs out, bool inline_ok, EstimateStats* stats) {
  EstimateRequest r = req;
  r.begin = 0;
  r.end = ref.size();
  r.weighted_sum = (out.mean || out.score || out.trace_cov || out.divergence);
  r.sum_squares = out.ess != nullptr;
  r.sum_yy = out.trace_cov || out.divergence;
  const PartialState st = estimate_partial(ref, r, inline_ok, stats);
  finalize_partial(st, req.x, req.alpha, req.sigma, req.kernel, out, inline_ok);
}

void stable_targets(const ReferenceSet& ref, const float* x0, const EstimateRequest& req, float* score, bool inline_ok) {
  EstimateRequest r = req;
  r.begin = 0;
  r.end = ref.size();
  r.weighted_sum = true;
  const size_t d = ref.dim();
  if (const size_t n = checked_mul(req.B, d, "batch x dim"), i = first_nonfinite(x0, n); i != n) {
    throw Error(code::kRange, "Expected finite values for x0Batch but received a non-finite value at index " + std::to_string(i));
  }
  PartialState st = estimate_partial(ref, r, inline_ok);
  // Merge each query's own clean point: a one-reference state with its exact log-weight.
  for (size_t q = 0; q < req.B; ++q) {
    const Lane lane = lane_constants(req, q, d);
    const float* y = x0 + q * d;
    double r2 = 0, yy = 0;
    for (size_t k = 0; k < d; ++k) {
      const double t = static_cast<double>(req.x[q * d + k]) - lane.alpha * y[k];
      r2 += t * t;
      const double u = static_cast<double>(y[k]) - st.origin[k];
      yy += u * u;
    }
    const double l = visit_kernel(req.kernel.kind, [&](auto unit) { return decltype(unit)::logw(r2, lane); });
    const double m = std::max(st.max[q], l);
    const double a = exp_or_zero(st.max[q] - m), b = exp_or_zero(l - m);
    st.max[q] = m;
    st.sum[q] = a * st.sum[q] + b;
    st.sumsq[q] = a * a * st.sumsq[q] + b * b;
    st.sumyy[q] = a * st.sumyy[q] + b * yy;
    double* acc = st.acc.data() + q * d;
    for (size_t k = 0; k < d; ++k) acc[k] = a * acc[k] + b * (static_cast<double>(y[k]) - st.origin[k]);
  }
  st.count += 1;
  EstimateOutputs out;
  out.score = score;
  finalize_partial(st, req.x, req.alpha, req.sigma, req.kernel, out, inline_ok);
}

size_t estimate_scratch_bytes(const ReferenceSet& ref, size_t B, bool weighted_sum) {
  // the fused pass, plus the pruned pass where the set has an index (both may run in one call)
  size_t bytes = fused_scratch_bytes(ref, B, weighted_sum);
  if (ref.prune_index() && pruning() && ref.size() >= kPruneMinRows && B > 0)
    bytes += pruned_scratch_bytes(*ref.prune_index(), B, ref.size(), ref.dim(), weighted_sum);
  return bytes;
}

}  // namespace sf
