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
std::atomic<bool> g_screening{true};
}  // namespace

void set_pruning(bool on) { g_pruning.store(on, std::memory_order_relaxed); }
bool pruning() { return g_pruning.load(std::memory_order_relaxed); }
void set_screening(bool on) { g_screening.store(on, std::memory_order_relaxed); }
bool screening() { return g_screening.load(std::memory_order_relaxed); }

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
  const KernelTable& kt = kernels();
  for (size_t q = 0; q < req.B; ++q) {
    // the query as the tiles see it: x' = x - alpha centre (make_lane)
    const double alpha = req.alpha.at(q);
    const double xx = kt.centred_sq(req.x + q * d, c, alpha, d, nullptr);
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

// The rows of a PartialState as a sink.
class StateRows final : public StateSink {
 public:
  explicit StateRows(PartialState& st) : st_(st) {}
  void put(size_t g, const QueryState& s, double*) override {
    st_.max[g] = s.max;
    st_.sum[g] = s.sum;
    st_.sumsq[g] = s.sumsq;
    st_.sumyy[g] = s.sumyy;
    if (s.acc) std::copy(s.acc, s.acc + st_.d, st_.acc.begin() + g * st_.d);
  }

 private:
  PartialState& st_;
};

// Finished queries straight into the outputs of estimate.
class OutputRows final : public StateSink {
 public:
  OutputRows(const ReferenceSet& ref, const EstimateRequest& req, const EstimateOutputs& out, double count)
      : ref_(ref), req_(req), out_(out), log_n_(std::log(std::max(count, 1.0))),
        origin_(ref.centre(), ref.centre() + ref.dim()) {}
  void put(size_t g, const QueryState& s, double* scratch) override {
    finalize_query(s, origin_.data(), ref_.dim(), req_.x + g * ref_.dim(), req_.alpha.at(g), req_.sigma.at(g), req_.kernel,
                   log_n_, out_, g, scratch);
  }

 private:
  const ReferenceSet& ref_;
  const EstimateRequest& req_;
  const EstimateOutputs& out_;
  const double log_n_;
  const std::vector<double> origin_;
};

// Exact pruning first (prune.hpp); the queries it hands back run the fused pass as one
// smaller batch (or as the whole request when it finished none), and every query's state goes
// to the sink.
void pruned_into(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req, size_t begin, size_t end,
                 StateSink& sink, bool inline_ok, EstimateStats* stats) {
  const size_t d = ref.dim();
  std::vector<char> finished;
  PruneStats ps;
  pruned_pass(ref, px, req, begin, end, sink, finished, &ps, inline_ok);
  if (stats) {
    stats->exact_pairs += ps.exact_pairs;
    stats->sparse_queries += ps.sparse_queries;
    stats->decide_ns += ps.decide_ns;
    stats->wide_tiles += ps.wide_tiles;
    stats->skipped_blocks += ps.skipped_blocks;
    stats->scratch_bytes = std::max(stats->scratch_bytes, estimate_scratch_bytes(ref, req.B, req.weighted_sum));
  }
  std::vector<size_t> ids;
  for (size_t q = 0; q < req.B; ++q)
    if (!finished[q]) ids.push_back(q);
  if (ids.empty()) return;
  EstimateRequest sub = req;
  sub.B = ids.size();
  std::vector<float> x, al, sg;
  if (ids.size() < req.B) {
    x.resize(sub.B * d);
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
  }
  const PartialState ds = fused_partial(ref, sub, begin, end, inline_ok, stats);
  for_query_groups(ids.size(), d, inline_ok, [&](size_t i, double* scratch) { sink.put(ids[i], state_row(ds, i), scratch); });
}

// The checks of every estimate request; false when there is nothing to compute.
bool check_request(const ReferenceSet& ref, const EstimateRequest& req, size_t begin, size_t end) {
  if (begin > end) throw Error(code::kRange, "Expected begin <= end for the reference range but received begin > end");
  checked_mul(req.B, ref.dim(), "batch x dim");
  if (req.B == 0 || begin == end) return false;
  check_memory(estimate_scratch_bytes(ref, req.B, req.weighted_sum), "the estimator's working memory");
  if (const size_t i = kernels().first_nonfinite(req.x, req.B * ref.dim()); i != req.B * ref.dim()) {
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
  return true;
}

// The set's pruning index when this range of this request gets the pruned pass.
const PruneIndex* pruning_for(const ReferenceSet& ref, size_t begin, size_t end) {
  const PruneIndex* px = ref.prune_index();
  return px && pruning() && end - begin >= kPruneMinRows ? px : nullptr;
}

}  // namespace

PartialState estimate_partial(const ReferenceSet& ref, const EstimateRequest& req, bool inline_ok, EstimateStats* stats) {
  const size_t begin = std::min(req.begin, ref.size());
  const size_t end = std::min(req.end, ref.size());
  if (!check_request(ref, req, begin, end)) return empty_state(ref, req.B, req.weighted_sum);
  if (stats) stats->pairs += static_cast<uint64_t>(req.B) * (end - begin);
  if (const PruneIndex* px = pruning_for(ref, begin, end)) {
    PartialState st = empty_state(ref, req.B, req.weighted_sum);
    st.count = static_cast<double>(end - begin);
    StateRows rows(st);
    pruned_into(ref, *px, req, begin, end, rows, inline_ok, stats);
    return st;
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
  if (const PruneIndex* px = pruning_for(ref, 0, ref.size()); px && check_request(ref, r, 0, ref.size())) {
    if (stats) stats->pairs += static_cast<uint64_t>(r.B) * ref.size();
    OutputRows rows(ref, r, out, static_cast<double>(ref.size()));
    pruned_into(ref, *px, r, 0, ref.size(), rows, inline_ok, stats);
    check_outputs(out, r.B, ref.dim(), r.sigma);
    return;
  }
  const PartialState st = estimate_partial(ref, r, inline_ok, stats);
  finalize_partial(st, req.x, req.alpha, req.sigma, req.kernel, out, inline_ok);
}

void stable_targets(const ReferenceSet& ref, const float* x0, const EstimateRequest& req, float* score, bool inline_ok) {
  EstimateRequest r = req;
  r.begin = 0;
  r.end = ref.size();
  r.weighted_sum = true;
  const size_t d = ref.dim();
  if (const size_t n = checked_mul(req.B, d, "batch x dim"), i = kernels().first_nonfinite(x0, n); i != n) {
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
