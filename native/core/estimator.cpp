#include "estimator.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dispatch.hpp"
#include "estimator_kernels.hpp"
#include "errors.hpp"
#include "limits.hpp"
#include "prune.hpp"
#include "thread_pool.hpp"

namespace sf {
using namespace est;
namespace {


// ---------------------------------------------------------------------------------------
// Reference set construction

// Drops the lowest `drop` mantissa bits of x (towards zero): a "rounder" centre.
float drop_bits(float x, int drop) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u &= ~((drop >= 32 ? 0u : (1u << drop)) - 1u);
  if (drop >= 32) u &= 0x80000000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

size_t rows_per_chunk(size_t d) { return std::max<size_t>(1, (size_t{1} << 16) / std::max<size_t>(d, 1)); }

}  // namespace

std::unique_ptr<ReferenceSet> ReferenceSet::build(const float* data, size_t n, size_t d, bool inline_ok) {
  const size_t nd = checked_mul(n, d, "reference rows x dim");
  // rows, per-row norms and the per-chunk column sums of the centring pass
  // (+ the pruning index: n x 66 floats and the sample's d x 64 x 8 doubles at most)
  check_memory(checked_mul(nd + 3 * n + d + 66 * n, sizeof(float), "the reference set") + checked_mul(d, sizeof(double) * (n / rows_per_chunk(d) + 2 + 520), "the reference set"),
               "the reference set");
  for (size_t i = 0; i < n * d; ++i) {
    if (!std::isfinite(data[i])) {
      throw Error(code::kRange, "Expected finite values for data but received a non-finite value at index " +
                                    std::to_string(i));
    }
  }
  auto rs = std::unique_ptr<ReferenceSet>(new ReferenceSet());
  rs->n_ = n;
  rs->d_ = d;
  rs->y_.resize(n * d);
  rs->c_.assign(d, 0.0f);
  rs->yy_.resize(n);
  rs->ny_.resize(n);
  rs->am_.resize(n);
  ThreadPool& pool = ThreadPool::global();
  const size_t rpc = rows_per_chunk(d);
  const size_t chunks = (n + rpc - 1) / rpc;

  // Column means, summed per fixed chunk in double then in chunk order (deterministic).
  std::vector<double> partial(chunks * d, 0.0);
  pool.parallel_for(chunks, [&](size_t ch) {
    double* acc = partial.data() + ch * d;
    for (size_t i = ch * rpc; i < std::min(n, (ch + 1) * rpc); ++i)
      for (size_t k = 0; k < d; ++k) acc[k] += data[i * d + k];
  }, inline_ok);
  std::vector<double> mean(d, 0.0);
  for (size_t ch = 0; ch < chunks; ++ch)
    for (size_t k = 0; k < d; ++k) mean[k] += partial[ch * d + k];
  for (double& m : mean) m /= static_cast<double>(std::max<size_t>(n, 1));
  partial.clear();
  partial.shrink_to_fit();

  // Pick per coordinate the first candidate centre for which y - c is exact for every row:
  // the float mean, then the mean with fewer mantissa bits, then 0 (always exact).
  const int drops[] = {0, 12, 20, 32};
  std::vector<char> settled(d, 0);
  for (int drop : drops) {
    std::vector<float> cand(d);
    for (size_t k = 0; k < d; ++k) cand[k] = settled[k] ? rs->c_[k] : (drop >= 32 ? 0.0f : drop_bits(static_cast<float>(mean[k]), drop));
    std::unique_ptr<std::atomic<unsigned char>[]> bad(new std::atomic<unsigned char>[d]);
    for (size_t k = 0; k < d; ++k) bad[k].store(0, std::memory_order_relaxed);
    if (drop < 32) {
      pool.parallel_for(chunks, [&](size_t ch) {
        for (size_t i = ch * rpc; i < std::min(n, (ch + 1) * rpc); ++i)
          for (size_t k = 0; k < d; ++k) {
            if (settled[k]) continue;
            const float y = data[i * d + k];
            const float t = y - cand[k];
            if (static_cast<double>(t) != static_cast<double>(y) - static_cast<double>(cand[k]) ||
                !std::isfinite(t)) {
              bad[k].store(1, std::memory_order_relaxed);
            }
          }
      }, inline_ok);
    }
    for (size_t k = 0; k < d; ++k) {
      if (!settled[k] && !bad[k].load(std::memory_order_relaxed)) {
        rs->c_[k] = cand[k];
        settled[k] = 1;
      }
    }
  }

  const float* c = rs->c_.data();
  pool.parallel_for(chunks, [&](size_t ch) {
    for (size_t i = ch * rpc; i < std::min(n, (ch + 1) * rpc); ++i) {
      double s = 0.0;
      float am = 0.0f;
      for (size_t k = 0; k < d; ++k) {
        const float t = data[i * d + k] - c[k];
        rs->y_[i * d + k] = t;
        s += static_cast<double>(t) * t;
        am = std::max(am, std::fabs(t));
      }
      rs->yy_[i] = static_cast<float>(s);
      rs->ny_[i] = static_cast<float>(std::sqrt(s));
      rs->am_[i] = am;
    }
  }, inline_ok);
  // The float32 tile arithmetic needs squared row norms (about the centre) well inside
  // float range: |values| up to about 1e18 pass, larger ones get a coded error here rather
  // than overflowing later.
  for (size_t i = 0; i < n; ++i) {
    if (!(static_cast<double>(rs->yy_[i]) <= kMagnitudeLimit)) {
      throw Error(code::kRange, "Expected data whose rows have squared norms (about the column centre) below 1e38 but row " +
                                    std::to_string(i) + " has " + std::to_string(static_cast<double>(rs->yy_[i])));
    }
    rs->max_norm_ = std::max(rs->max_norm_, static_cast<double>(rs->ny_[i]));
  }
  rs->prune_ = build_prune_index(rs->y_.data(), n, d, inline_ok);
  return rs;
}

void ReferenceSet::gather(const uint32_t* idx, size_t n, float* out) const {
  for (size_t i = 0; i < n; ++i) {
    if (idx[i] >= n_) {
      throw Error(code::kRange, "Expected row indices below " + std::to_string(n_) + " but received " + std::to_string(idx[i]));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const float* row = y_.data() + static_cast<size_t>(idx[i]) * d_;
    for (size_t k = 0; k < d_; ++k) out[i * d_ + k] = row[k] + c_[k];
  }
}

size_t ReferenceSet::bytes() const {
  return sizeof(float) * (y_.capacity() + c_.capacity() + yy_.capacity() + ny_.capacity() + am_.capacity()) +
         sizeof(*this) + (prune_ ? prune_->bytes() : 0);
}

PrecisionPolicy& precision_policy() {
  static PrecisionPolicy p;
  return p;
}

namespace {

// Tile length: a tile of references should stay in L2 between the two GEMMs. Depends only
// on d, so the reduction order never depends on the thread count.
size_t tile_rows(size_t d) {
  size_t nt = (size_t{1} << 17) / std::max<size_t>(d, 1);
  nt = std::clamp<size_t>(nt, 128, 512);
  return nt & ~size_t{3};
}

struct Plan {
  size_t qb = 0;       // queries per block
  size_t nqb = 0;      // query blocks
  size_t shards = 1;   // reference shards per query block
  size_t nt = 0;       // references per tile
  size_t tiles = 0;    // tiles in [begin, end)
  size_t begin = 0, end = 0;
  // The one kernel table of the call: qblock and the tile layout depend on it, so a SIMD
  // level switched by another thread mid-call (setSimdLevel) must not mix two tables.
  const KernelTable* kt = nullptr;
};

Plan make_plan(const ReferenceSet& ref, size_t B, size_t begin, size_t end) {
  const KernelTable& kt = kernels();
  Plan p;
  p.kt = &kt;
  p.qb = kt.qblock;
  p.nqb = (B + p.qb - 1) / p.qb;
  p.nt = tile_rows(ref.dim());
  p.begin = begin;
  p.end = end;
  p.tiles = (end - begin + p.nt - 1) / p.nt;
  // Few query blocks: split the references too, so a single query still uses every core:
  // 4 shards in total, more for big sets (one per 2^23 reference elements, up to 64). Each
  // shard judges the precision window against its own maximum, so more shards than needed
  // cost extra precise recomputations. A function of the problem only, never of the thread
  // count.
  if (p.nqb < 8 && p.tiles > 1) {
    const double work = static_cast<double>(end - begin) * static_cast<double>(ref.dim()) / static_cast<double>(1u << 23);
    const double total = std::clamp(work, 4.0, 64.0);
    const size_t want = static_cast<size_t>(std::ceil(total / static_cast<double>(p.nqb)));
    const size_t by_work = std::max<size_t>(1, (end - begin) * ref.dim() / (size_t{1} << 16));
    p.shards = std::clamp<size_t>(std::min(want, by_work), 1, p.tiles);
  }
  return p;
}



// Scratch of one work item.
struct Scratch {
  std::vector<float> X;     // lanes: XT (d x qb); rows: X (nq x d)
  std::vector<float> S;     // nt x qb: dot products / log-weights
  std::vector<float> P;     // nt x qb: weights
  std::vector<float> tacc;  // small d: the tile's weighted sums (d x qb)
  std::vector<float> Ef;    // nonlinear kernels: their error bounds
  std::vector<double> nl_base;  // nonlinear kernels: what the float tile values are relative to
  std::vector<double> r2top;    // radial kernels: r^2 of the best recomputed pair so far
  std::vector<float> tlo, thi;   // nonlinear kernels: per-lane tile max of (L - E) and of L
  std::vector<float> thr;        // nonlinear kernels: per-lane candidate threshold, then shift
  std::vector<float> nl_xx, nl_a, nl_a2, nl_s2, nl_it, nl_c, nl_off, nl_iq, nl_eA, nl_eG, nl_eB, nl_eC;
  std::vector<double> acc;  // lanes: d x qb; rows: nq x d
  std::vector<float> M, scale, sums, cA, cB, cC;
  std::vector<double> off, s0, s1, s2, eA, eG, eB, eC, lo, x0, x1, x2;  // x*: tile temporaries
  std::vector<double> exact;      // nq x d: weighted sums of heavy recomputed pairs (lazy)
  std::vector<char> exact_used;   // per query
  std::vector<uint32_t> rowbits;  // per tile row: lanes with a possible candidate
};

// An upper bound: every kernel's vectors (S, P and the nonlinear kernels' E per tile; 23
// float and 14 double per-lane vectors; the refined-pair lists at their largest).
size_t scratch_bytes(size_t qb, size_t nt, size_t d, bool ws) {
  return sizeof(float) * (qb * d + 3 * nt * qb + 23 * qb + d) + sizeof(uint32_t) * nt + sizeof(double) * ((ws ? qb * d : 0) + 14 * qb) +
         (2 * sizeof(uint32_t) + sizeof(double)) * nt * qb;
}

// What the work items of one call count, summed over threads.
struct Counters {
  std::atomic<uint64_t> refined{0};    // pairs recomputed precisely
  std::atomic<uint64_t> decide_ns{0};  // time spent deciding which pairs to recompute
};

// Runs one query block over the references of tiles [t0, t1) and writes the partial state
// of its queries into st (rows q0 .. q0 + nq).
template <class K>
void run_item(const ReferenceSet& ref, const EstimateRequest& req, const Plan& plan, size_t q0, size_t nq,
              size_t t0, size_t t1, PartialState& st, Counters& counters) {
  const KernelTable& kt = *plan.kt;
  const PrecisionPolicy pol = precision_policy();
  const size_t d = ref.dim(), QB = plan.qb, W = kt.lanes;
  // Queries in vector lanes, unless there are too few to fill a vector (then row-vectorised
  // dot products do better) - except for small d, where the fused in-register tile wins anyway.
  const bool lanes = nq >= W || d <= kt.small_d;
  const float* c = ref.centre();
  // The scratch is kept by the thread between items and calls: its larger vectors (d x qblock
  // accumulators) would otherwise be fresh mmap'd pages, page-faulted in on every item.
  static thread_local Scratch tls;
  Scratch& s = tls;  // one TLS look-up (general-dynamic TLS in a shared library)
  for (auto* v : {&s.S, &s.P, &s.Ef, &s.tacc}) v->clear();
  s.exact.clear();
  s.X.assign(lanes ? d * QB : nq * d, 0.0f);
  const bool small_d = d <= kt.small_d && K::kFusable;
  if (!small_d) {  // the fused small-d path allocates these only if a tile needs the general path
    s.S.assign(plan.nt * QB, 0.0f);
    s.P.assign(plan.nt * QB, 0.0f);
  }
  if (req.weighted_sum) s.acc.assign(d * (lanes ? QB : nq), 0.0);
  s.M.assign(QB, kEmpty);
  s.scale.assign(QB, 1.0f);
  s.sums.assign(3 * QB, 0.0f);
  s.cA.assign(QB, 0.0f);
  s.cB.assign(QB, 0.0f);
  s.cC.assign(QB, 0.0f);
  s.off.assign(QB, 0.0);
  s.s0.assign(QB, 0.0);
  s.s1.assign(QB, 0.0);
  s.s2.assign(QB, 0.0);
  s.eA.assign(QB, 0.0);
  s.eG.assign(QB, 0.0);
  s.eB.assign(QB, 0.0);
  s.eC.assign(QB, 0.0);
  s.lo.assign(QB, 0.0);
  s.x0.assign(QB, 0.0);
  s.x1.assign(QB, 0.0);
  s.x2.assign(QB, 0.0);
  s.exact_used.assign(QB, 0);
  s.nl_base.assign(QB, 0.0);
  s.r2top.assign(QB, 0.0);
  s.tlo.assign(QB, 0.0f);
  s.thi.assign(QB, 0.0f);
  s.thr.assign(QB, 0.0f);
  for (auto* v : {&s.nl_xx, &s.nl_a, &s.nl_a2, &s.nl_s2, &s.nl_it, &s.nl_c, &s.nl_off, &s.nl_iq, &s.nl_eA, &s.nl_eG, &s.nl_eB, &s.nl_eC})
    v->assign(QB, 0.0f);

  std::vector<Lane> lane(QB);
  std::vector<float> xrow(d);
  for (size_t q = 0; q < nq; ++q) {
    lane[q] = make_lane(req, q0 + q, c, d, lanes ? xrow.data() : s.X.data() + q * d);
    if (lanes)
      for (size_t k = 0; k < d; ++k) s.X[k * QB + q] = xrow[k];
    if constexpr (K::kLinear) s.off[q] = K::initial_offset(lane[q]);
  }
  // Is any pair's approximate log-weight possibly worse than the tolerance? If not, the
  // refinement pass is skipped for the whole item.
  double max_norm = 0, max_abs = 0;
  const float* ny = ref.norms();
  const float* yy = ref.sqnorms();
  const float* am = ref.maxabs();
  const size_t j0 = plan.begin + t0 * plan.nt, j1 = std::min(plan.end, plan.begin + t1 * plan.nt);
  for (size_t j = j0; j < j1; ++j) {
    max_norm = std::max<double>(max_norm, ny[j]);
    max_abs = std::max<double>(max_abs, am[j]);
  }
  // Pairs recomputed precisely in this tile: their weights are accumulated in double.
  std::vector<uint32_t> refined_j, refined_q;
  std::vector<double> refined_l;
  std::vector<char> lane_refined(QB, 0);

  uint64_t my_refined = 0, my_decide_ns = 0;
  const unsigned flags = (req.sum_squares ? 1u : 0u) | (req.sum_yy ? 2u : 0u);
  // Small d with queries in lanes: tiles without uncertain pairs run fully in registers.
  const bool small = lanes && d <= kt.small_d && K::kFusable;
  if (small) s.tacc.assign(d * QB, 0.0f);
  for (size_t jt = j0; jt < j1; jt += plan.nt) {
    const size_t nt = std::min(plan.nt, j1 - jt);
    const float* Y = ref.rows() + jt * d;
    if constexpr (K::kFusable) if (small) {
      // Small d: per-lane constants first; without uncertain pairs the whole tile runs in
      // registers (fused_small), otherwise it takes the general path below.
      bool uncertain = false;
      for (size_t q = 0; q < nq; ++q) {
        K::coefs(lane[q], s.off[q], &s.cA[q], &s.cB[q], &s.cC[q]);
        K::error_coefs(lane[q], d, s.off[q], &s.eA[q], &s.eG[q], &s.eB[q], &s.eC[q]);
        if (s.eA[q] * max_norm + s.eG[q] * max_abs + s.eB[q] * max_norm * max_norm + s.eC[q] > pol.tolerance) {
          uncertain = true;
        }
      }
      if (!uncertain) {
        for (size_t q = nq; q < QB; ++q) {
          s.cA[q] = 0.0f;
          s.cB[q] = 0.0f;
          s.cC[q] = kEmpty;
        }
        kt.fused_small(s.X.data(), Y, yy + jt, nt, d, s.cA.data(), s.cB.data(), s.cC.data(), s.M.data(),
                       s.scale.data(), s.sums.data(), s.tacc.data(), flags);
        for (size_t q = 0; q < nq; ++q) {
          const double sc = s.scale[q];
          s.s0[q] = s.s0[q] * sc + s.sums[q];
          s.s1[q] = s.s1[q] * sc * sc + s.sums[QB + q];
          s.s2[q] = s.s2[q] * sc + s.sums[2 * QB + q];
          if (req.weighted_sum)
            for (size_t k = 0; k < d; ++k) s.acc[k * QB + q] = s.acc[k * QB + q] * sc + s.tacc[k * QB + q];
        }
        for (size_t q = 0; q < nq; ++q) s.off[q] += s.M[q];
        for (size_t q = 0; q < QB; ++q) s.M[q] = 0.0f;
        continue;
      }
      if (s.S.empty()) {
        s.S.assign(plan.nt * QB, 0.0f);
        s.P.assign(plan.nt * QB, 0.0f);
      }
    }
    if (lanes) {
      kt.dot_lanes(s.X.data(), Y, nt, d, s.S.data());
    } else {
      kt.dot_rows(s.X.data(), nq, Y, nt, d, s.S.data());
    }
    const auto decide_start = std::chrono::steady_clock::now();
    bool fuse = false;
    bool any_uncertain = false;
    if constexpr (K::kLinear) {
      for (size_t q = 0; q < nq; ++q) {
        K::coefs(lane[q], s.off[q], &s.cA[q], &s.cB[q], &s.cC[q]);
        K::error_coefs(lane[q], d, s.off[q], &s.eA[q], &s.eG[q], &s.eB[q], &s.eC[q]);
        if (s.eA[q] * max_norm + s.eG[q] * max_abs + s.eB[q] * max_norm * max_norm + s.eC[q] > pol.tolerance) {
          any_uncertain = true;
        }
      }
      // Without uncertain pairs the log-weights are formed inside the softmax pass.
      fuse = !any_uncertain && K::kFusable;
      if (!fuse) K::tile(kt, s.S.data(), nt, yy + jt, s.cA.data(), s.cB.data(), s.cC.data(), s.tlo.data());
      if (nq < QB) {
        for (size_t q = nq; q < QB; ++q) {  // padded lanes: log-weight kEmpty either way
          s.cA[q] = 0.0f;
          s.cB[q] = 0.0f;
          s.cC[q] = kEmpty;
        }
        for (size_t j = 0; j < nt; ++j)
          for (size_t q = nq; q < QB; ++q) s.S[j * QB + q] = fuse ? 0.0f : kEmpty;
      }

      refined_j.clear();
      refined_q.clear();
      refined_l.clear();
      if (any_uncertain) {
        // A lower bound of each query's true maximum log-weight (the tile's largest
        // approximate value minus the lane's largest error, or the running maximum), then a
        // precise recomputation of every pair that is uncertain and could be within the
        // window. The per-pair error is only evaluated for pairs that pass the cheap test
        // with the lane's largest error.
        double ny_max = 0, am_max = 0, yy_max = 0;
        for (size_t j = 0; j < nt; ++j) {
          ny_max = std::max<double>(ny_max, ny[jt + j]);
          am_max = std::max<double>(am_max, am[jt + j]);
          yy_max = std::max<double>(yy_max, yy[jt + j]);
        }
        for (size_t q = 0; q < nq; ++q) s.x0[q] = s.tlo[q];  // the tile's largest value per lane (K::tile)
        // As in the nonlinear branch below: pairs more than log(N e / tol) below the top stay
        // approximate.
        const double log_n_tol = std::log(static_cast<double>(ref.size()) / pol.tolerance);
        for (size_t q = 0; q < nq; ++q) {
          s.x1[q] = s.eA[q] * ny_max + s.eG[q] * am_max + s.eB[q] * yy_max + s.eC[q];  // largest error
          s.lo[q] = std::max<double>(s.M[q], s.x0[q] - s.x1[q]) - pol.window;           // candidate threshold
        }
        // The decision in SIMD float (a superset of what the double test below accepts), then
        // the double test on the flagged pairs only.
        const float kInfF = std::numeric_limits<float>::infinity();
        // thresholds lowered by 1e-3 (float sums and the SIMD log), then rounded down
        const auto down = [&](double v) { return std::nextafter(static_cast<float>(v - 1e-3), -kInfF); };
        for (size_t q = 0; q < QB; ++q) {
          const bool v = q < nq && s.x1[q] > pol.tolerance;  // else no pair of the lane can qualify
          // L + e >= lo, and L + e + log e >= lo + window - log_n_tol with log e <= log x1
          s.thr[q] = v ? down(std::max(s.lo[q], s.lo[q] + pol.window - log_n_tol - std::log(s.x1[q]))) : kInfF;
          s.nl_eA[q] = v ? static_cast<float>(s.eA[q]) : 0.0f;
          s.nl_eG[q] = v ? static_cast<float>(s.eG[q]) : 0.0f;
          s.nl_eB[q] = v ? static_cast<float>(s.eB[q]) : 0.0f;
          s.nl_eC[q] = v ? static_cast<float>(s.eC[q]) : 0.0f;
        }
        s.rowbits.resize(nt);
        const bool any_row = kt.refine_mask(s.S.data(), nt, ny + jt, am + jt, yy + jt, s.nl_eA.data(), s.nl_eG.data(),
                                            s.nl_eB.data(), s.nl_eC.data(), s.thr.data(),
                                            static_cast<float>(pol.tolerance) * 0.999f, s.rowbits.data());
        for (size_t j = 0; any_row && j < nt; ++j) {
          const double nyj = ny[jt + j], yyj = yy[jt + j], amj = am[jt + j];
          for (uint32_t bits = s.rowbits[j]; bits; bits &= bits - 1) {
            const size_t q = ctz32(bits);
            const float L = s.S[j * QB + q];
            if (L + s.x1[q] < s.lo[q]) continue;
            const double e = s.eA[q] * nyj + s.eG[q] * amj + s.eB[q] * yyj + s.eC[q];
            if (e > pol.tolerance && L + e >= s.lo[q] &&
                (L + e) - (s.lo[q] + pol.window) + log_n_tol + std::log(e) >= 0) {
              const double r2 = kt.exact_r2(req.x + (q0 + q) * d, Y + j * d, c, d, lane[q].alpha);
              refined_j.push_back(static_cast<uint32_t>(j));
              refined_q.push_back(static_cast<uint32_t>(q));
              refined_l.push_back(K::logw(r2, lane[q]));  // true log-weight, double
              lane_refined[q] = 1;
            }
          }
        }
        my_refined += refined_j.size();
        // Move each refined lane's offset to its largest log-weight (in double) before the
        // values are stored as floats relative to it: near the top they then keep their digits
        // even when the offset is huge (small sigma, first tile).
        for (size_t q = 0; q < nq; ++q) s.lo[q] = -std::numeric_limits<double>::infinity();
        for (size_t i = 0; i < refined_q.size(); ++i) s.lo[refined_q[i]] = std::max(s.lo[refined_q[i]], refined_l[i]);
        for (size_t q = 0; q < nq; ++q) {
          if (!lane_refined[q]) continue;
          double top = s.lo[q];
          if (s.M[q] != kEmpty) top = std::max(top, s.off[q] + s.M[q]);
          const double shift = s.off[q] - top;
          for (size_t j = 0; j < nt; ++j) s.S[j * QB + q] = static_cast<float>(s.S[j * QB + q] + shift);
          if (s.M[q] != kEmpty) s.M[q] = static_cast<float>(s.M[q] + shift);
          s.off[q] = top;
        }
        for (size_t i = 0; i < refined_q.size(); ++i) {
          s.S[refined_j[i] * QB + refined_q[i]] = static_cast<float>(refined_l[i] - s.off[refined_q[i]]);
        }
      }
    } else {
      // Kernels nonlinear in r^2: each pair's r^2 from its dot product in double, its
      // log-weight in double, and a modelled error E = |dl/dr^2| (error of r^2). Pairs that
      // are uncertain and may be within the window of the top are recomputed from exact
      // direct differences; then every lane's offset moves to its largest log-weight
      // before the values are stored as floats relative to it.
      if (s.Ef.empty()) s.Ef.assign(plan.nt * QB, 0.0f);
      // The tile form in float with its error bound (SIMD), relative to the float offset.
      const double gam = pol.gamma_scale * std::sqrt(static_cast<double>(d)) * kU;
      for (size_t q = 0; q < QB; ++q) {
        const bool v = q < nq;
        const Lane& L = lane[v ? q : 0];
        const double a = v ? L.alpha : 0.0, t = v ? L.sigma : 1.0;
        s.nl_xx[q] = v ? static_cast<float>(L.xx) : 0.0f;
        s.nl_a[q] = static_cast<float>(a);
        s.nl_a2[q] = static_cast<float>(a * a);
        s.nl_s2[q] = static_cast<float>(K::kRadial ? (kRadialFloor * t) * (kRadialFloor * t) : t * t);
        s.nl_it[q] = static_cast<float>(1.0 / t);
        s.nl_c[q] = v ? static_cast<float>(L.kc) : 0.0f;
        s.nl_off[q] = v ? static_cast<float>(s.off[q]) : 0.0f;
        // Poisson: the offset as a reference 1/q_ref = exp(off/c); the float offset used in
        // the scalar pass below is then exactly -c log(q_ref) as far as float goes
        // What the kernel's float values are relative to, in double (nl_base):
        //  Poisson: -c log(q_ref) of the float reference 1/q_ref = exp(off/c) actually used;
        //  radial: the float offset plus c/2 log(r2_ref), r2_ref the top pair's r^2 so far
        //  (||x'||^2 before the first tile), so that log(r^2/r2_ref) stays near 0.
        // The reference is clamped to [lo_ref, hi_ref] so that every pair's ratio to it lies in
        // [1e-37, 1e37]: the float product and its logarithm then stay normal (V::log needs
        // positive normal input) for r^2 from the kernel's floor s2 to the lane's largest
        // possible r2max = (|x'| + |alpha| max |y'|)^2 (check_magnitudes keeps r2max / s2 <= 1e72).
        const double r2max = v ? (L.nx + std::fabs(a) * ref.max_norm()) * (L.nx + std::fabs(a) * ref.max_norm()) : 1.0;
        const double s2min = K::kRadial ? (kRadialFloor * t) * (kRadialFloor * t) : t * t;
        const double lo_ref = std::max(r2max, s2min) * 1e-37, hi_ref = s2min * 1e37;
        const auto clamp_ref = [&](double r) { return std::min(std::max(r, lo_ref), std::max(lo_ref, hi_ref)); };
        if (K::kKind == 1) {
          const double qref = (v && L.kc > 0) ? clamp_ref(std::exp(std::clamp(-s.off[q] / L.kc, std::log(lo_ref), std::log(std::max(lo_ref, hi_ref))))) : 1.0;
          s.nl_iq[q] = static_cast<float>(1.0 / qref);
          s.nl_base[q] = v && L.kc > 0 ? L.kc * std::log(static_cast<double>(s.nl_iq[q])) : 0.0;
        } else {
          const double ref2 = v ? clamp_ref(s.r2top[q] > 0 ? s.r2top[q] : std::max(L.xx, s2min)) : 1.0;
          s.nl_iq[q] = static_cast<float>(1.0 / ref2);
          const double lr_ref = -std::log(static_cast<double>(s.nl_iq[q]));  // log r2_ref as used
          s.nl_off[q] = v ? static_cast<float>(s.off[q] + 0.5 * L.kc * lr_ref) : 0.0f;
          s.nl_base[q] = static_cast<double>(s.nl_off[q]) - 0.5 * (v ? L.kc : 0.0) * lr_ref;
        }
        const double ea = 2 * std::fabs(a) * (v ? L.nx : 0.0);
        s.nl_eA[q] = static_cast<float>(ea * 2 * kU);
        s.nl_eG[q] = static_cast<float>(ea * gam);
        // the two roundings of fma(-2a, S, fma(a^2, yy, xx)) in float
        s.nl_eB[q] = static_cast<float>(2 * kU * a * a);
        s.nl_eC[q] = static_cast<float>(2 * kU * (v ? L.xx : 0.0));
      }
      NonlinearLanes nl;
      nl.kind = K::kKind;
      nl.xx = s.nl_xx.data();
      nl.a = s.nl_a.data();
      nl.a2 = s.nl_a2.data();
      nl.s2 = s.nl_s2.data();
      nl.inv_t = s.nl_it.data();
      nl.c = s.nl_c.data();
      nl.off = s.nl_off.data();
      nl.inv_qref = s.nl_iq.data();
      nl.eA = s.nl_eA.data();
      nl.eG = s.nl_eG.data();
      nl.eB = s.nl_eB.data();
      nl.eC = s.nl_eC.data();
      kt.nonlinear_tile(s.S.data(), s.Ef.data(), nt, yy + jt, ny + jt, am + jt, nl, s.tlo.data(), s.thi.data());
      refined_j.clear();
      refined_q.clear();
      refined_l.clear();
      // Per lane, in double: a lower bound of the true maximum (this tile's largest value
      // minus error, or the running reference), the candidate threshold relative to the base,
      // and the largest value so far (the new offset).
      for (size_t q = 0; q < nq; ++q) {
        const double prev = (s.M[q] != kEmpty) ? s.off[q] + s.M[q] : -std::numeric_limits<double>::infinity();
        s.lo[q] = std::max(prev, s.nl_base[q] + s.tlo[q]);
        s.x1[q] = s.lo[q] - pol.window - s.nl_base[q];  // threshold on the float values
        s.x0[q] = std::max(prev, s.nl_base[q] + s.thi[q]);
      }
      // A pair below the top by more than log(N e / tol) is left approximate even when its
      // error e exceeds the tolerance: its weight is at most tol / (N e) of the top's, so all
      // such pairs together move the weighted mean error by at most tol (times the spread).
      // The window caps this at pol.window.
      const double log_n_tol = std::log(static_cast<double>(ref.size()) / pol.tolerance);
      // The float thresholds (rounded down; padded lanes never pass) let a vectorised pass
      // skip the rows of the tile without candidates.
      // With the lane's largest error E, no pair below lo - base - log(N E / tol) can qualify.
      const float tol_f = static_cast<float>(pol.tolerance);
      for (size_t q = 0; q < QB; ++q) s.thr[q] = 0.0f;
      for (size_t j = 0; j < nt; ++j) {
        const float* Ej = s.Ef.data() + j * QB;
        for (size_t q = 0; q < QB; ++q) s.thr[q] = std::max(s.thr[q], Ej[q]);
      }
      for (size_t q = 0; q < QB; ++q) {
        if (q >= nq || !(s.thr[q] > tol_f)) {
          s.thr[q] = std::numeric_limits<float>::infinity();
          continue;
        }
        const double t = std::max(s.x1[q], s.lo[q] - s.nl_base[q] - log_n_tol - std::log(static_cast<double>(s.thr[q])));
        s.thr[q] = std::nextafter(static_cast<float>(t), -std::numeric_limits<float>::infinity());
      }
      for (size_t j = 0; j < nt; ++j) {
        const float* Lj = s.S.data() + j * QB;
        const float* Ej = s.Ef.data() + j * QB;
        unsigned any = 0;
        for (size_t q = 0; q < QB; ++q) any |= static_cast<unsigned>((Ej[q] > tol_f) & (Lj[q] + Ej[q] >= s.thr[q]));
        if (!any) continue;
        for (size_t q = 0; q < nq; ++q) {
          const float L = Lj[q], e = Ej[q];
          if (e > tol_f && L + e >= s.thr[q] &&
              (L + e) - (s.lo[q] - s.nl_base[q]) + log_n_tol + std::log(static_cast<double>(e)) >= 0) {
            const double r2 = kt.exact_r2(req.x + (q0 + q) * d, Y + j * d, c, d, lane[q].alpha);
            const double l = K::logw(r2, lane[q]);
            if (l > s.x0[q]) {
              s.x0[q] = l;
              s.r2top[q] = r2;
            }
            refined_j.push_back(static_cast<uint32_t>(j));
            refined_q.push_back(static_cast<uint32_t>(q));
            refined_l.push_back(l);
            lane_refined[q] = 1;
          }
        }
      }
      my_refined += refined_j.size();
      for (size_t q = 0; q < QB; ++q) {
        if (q >= nq) {
          s.thr[q] = 0.0f;
          continue;
        }
        const double top = s.x0[q];
        if (s.M[q] != kEmpty) s.M[q] = static_cast<float>(s.off[q] + s.M[q] - top);
        s.off[q] = top;
        s.thr[q] = static_cast<float>(s.nl_base[q] - top);  // the shift to the new offset
      }
      for (size_t j = 0; j < nt; ++j) {
        float* Sj = s.S.data() + j * QB;
        for (size_t q = 0; q < QB; ++q) Sj[q] += s.thr[q];
      }
      for (size_t i = 0; i < refined_q.size(); ++i) {
        s.S[refined_j[i] * QB + refined_q[i]] = static_cast<float>(refined_l[i] - s.off[refined_q[i]]);
      }
      for (size_t j = 0; j < nt; ++j)
        for (size_t q = nq; q < QB; ++q) s.S[j * QB + q] = kEmpty;
    }

    my_decide_ns += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - decide_start).count());
    if (fuse) {
      kt.softmax_lanes(s.S.data(), s.P.data(), nt, yy + jt, s.M.data(), s.scale.data(), s.sums.data(), s.cA.data(),
                       s.cB.data(), s.cC.data(), flags);
    } else {
      kt.softmax_lanes(s.S.data(), s.P.data(), nt, yy + jt, s.M.data(), s.scale.data(), s.sums.data(), nullptr, nullptr,
                       nullptr, flags);
    }
    // Lanes with precisely recomputed pairs (small sigma: the weight sits on a few
    // references, and float sums of a few large terms would cost digits the score
    // amplifies by 1/sigma^2) take their tile sums in double; their recomputed pairs are
    // added to the weighted sum in double and removed from the GEMM.
    for (size_t q = 0; q < nq; ++q) {
      if (!lane_refined[q]) continue;
      double a0 = 0, a1 = 0, a2 = 0;
      for (size_t j = 0; j < nt; ++j) {
        const double p = s.P[j * QB + q];
        a0 += p;
        a1 += p * p;
        a2 += p * yy[jt + j];
      }
      s.x0[q] = a0;
      s.x1[q] = a1;
      s.x2[q] = a2;
    }
    for (size_t q = 0; q < nq; ++q) {
      const double sc = s.scale[q];
      const bool exact = lane_refined[q];
      s.s0[q] = s.s0[q] * sc + (exact ? s.x0[q] : s.sums[q]);
      s.s1[q] = s.s1[q] * sc * sc + (exact ? s.x1[q] : s.sums[QB + q]);
      s.s2[q] = s.s2[q] * sc + (exact ? s.x2[q] : s.sums[2 * QB + q]);
      if (req.weighted_sum && sc != 1.0) {
        if (lanes) {
          for (size_t k = 0; k < d; ++k) s.acc[k * QB + q] *= sc;
        } else {
          for (size_t k = 0; k < d; ++k) s.acc[q * d + k] *= sc;
        }
        if (s.exact_used[q])
          for (size_t k = 0; k < d; ++k) s.exact[q * d + k] *= sc;
      }
    }
    if (req.weighted_sum) {
      // Heavy recomputed pairs (weight >= 2^-10 of the running maximum) go to a contiguous
      // double accumulator per query; light ones stay in the GEMM, where their float
      // rounding is proportionally negligible.
      for (size_t i = 0; i < refined_q.size(); ++i) {
        const size_t j = refined_j[i], q = refined_q[i];
        float& P = s.P[j * QB + q];
        if (P < 0x1p-10f) continue;
        const double p = P;
        P = 0.0f;
        if (s.exact.empty()) s.exact.assign(nq * d, 0.0);
        if (!s.exact_used[q]) s.exact_used[q] = 1;
        const float* y = Y + j * d;
        double* e = s.exact.data() + q * d;
        for (size_t k = 0; k < d; ++k) e[k] += p * y[k];
      }
    }
    for (size_t i = 0; i < refined_q.size(); ++i) lane_refined[refined_q[i]] = 0;
    if (req.weighted_sum) {
      if (lanes) {
        kt.acc_lanes(s.acc.data(), s.P.data(), Y, nt, d);
      } else {
        kt.acc_rows(s.acc.data(), nq, s.P.data(), Y, nt, d);
      }
    }
    // Re-centre: the running reference becomes the offset, so stored log-weights stay near
    // 0. Padded lanes get a reference too (their weights are 0 from here on).
    for (size_t q = 0; q < nq; ++q) s.off[q] += s.M[q];
    for (size_t q = 0; q < QB; ++q) s.M[q] = 0.0f;
  }

  for (size_t q = 0; q < nq; ++q) {
    const size_t g = q0 + q;
    st.max[g] = s.off[q];
    st.sum[g] = s.s0[q];
    st.sumsq[g] = s.s1[q];
    st.sumyy[g] = s.s2[q];
    if (req.weighted_sum) {
      double* a = st.acc.data() + g * d;
      if (lanes) {
        for (size_t k = 0; k < d; ++k) a[k] = s.acc[k * QB + q];
      } else {
        for (size_t k = 0; k < d; ++k) a[k] = s.acc[q * d + k];
      }
      if (s.exact_used[q])
        for (size_t k = 0; k < d; ++k) a[k] += s.exact[q * d + k];
    }
  }
  counters.refined.fetch_add(my_refined, std::memory_order_relaxed);
  counters.decide_ns.fetch_add(my_decide_ns, std::memory_order_relaxed);
  // a very large scratch (huge d) is not kept
  if (s.acc.capacity() * sizeof(double) + s.X.capacity() * sizeof(float) > (size_t{16} << 20)) tls = Scratch();
}

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

void run_plan(const ReferenceSet& ref, const EstimateRequest& req, const Plan& plan, std::vector<PartialState>& states,
              bool inline_ok, Counters& counters) {
  auto item = [&](size_t it) {
    const size_t qbi = it / plan.shards, sh = it % plan.shards;
    const size_t q0 = qbi * plan.qb, nq = std::min(plan.qb, req.B - q0);
    const size_t t0 = plan.tiles * sh / plan.shards, t1 = plan.tiles * (sh + 1) / plan.shards;
    switch (req.kernel.kind) {
      case KernelKind::Gaussian:
        run_item<GaussianKernel>(ref, req, plan, q0, nq, t0, t1, states[sh], counters);
        break;
      case KernelKind::Poisson:
        run_item<PoissonKernel>(ref, req, plan, q0, nq, t0, t1, states[sh], counters);
        break;
      case KernelKind::RadialTanh:
        run_item<RadialKernel<true>>(ref, req, plan, q0, nq, t0, t1, states[sh], counters);
        break;
      case KernelKind::RadialExp:
        run_item<RadialKernel<false>>(ref, req, plan, q0, nq, t0, t1, states[sh], counters);
        break;
    }
  };
  ThreadPool::global().parallel_for(plan.nqb * plan.shards, item, inline_ok);
}

}  // namespace

// The float32 tile forms stay finite and clear of the padded-lane mark only while their terms
// do: r^2 (about the centre) up to kMagnitudeLimit; the Gaussian's alpha x.y / sigma^2,
// alpha^2 ||y||^2 / (2 sigma^2) and ||x||^2 / (2 sigma^2), and the radial kernels' r / t, up to
// kLogWeightLimit; the Poisson ratio r^2 / tau^2 up to 1e72 (run_item takes r^2 relative to a
// reference within 1e37 of both ends). Outside that range (data near 1e18, or sigma far below
// the float32 resolution of the data) the request gets a coded error instead of inf/NaN.
static void check_magnitudes(const ReferenceSet& ref, const EstimateRequest& req) {
  const size_t d = ref.dim();
  const float* c = ref.centre();
  const double yn = ref.max_norm();
  for (size_t q = 0; q < req.B; ++q) {
    // the query as the tiles see it: x' = x - alpha centre (make_lane)
    const double alpha = req.alpha.at(q);
    double xx = 0;
    for (size_t k = 0; k < d; ++k) {
      const double t = static_cast<double>(req.x[q * d + k]) - alpha * c[k];
      xx += t * t;
    }
    const double a = std::fabs(alpha), sg = req.sigma.at(q);
    const double xn = std::sqrt(xx);
    const double r2max = (xn + a * yn) * (xn + a * yn);
    bool ok = r2max <= kMagnitudeLimit;
    switch (req.kernel.kind) {
      case KernelKind::Gaussian: {
        const double inv = 1.0 / (2 * sg * sg);
        ok = ok && std::max({2 * a * xn * yn * inv, a * a * yn * yn * inv, xx * inv}) <= kLogWeightLimit;
        break;
      }
      case KernelKind::Poisson: ok = ok && r2max / (sg * sg) <= 1e72; break;
      default: ok = ok && r2max / (sg * sg) <= kLogWeightLimit * kLogWeightLimit; break;
    }
    if (!ok) {
      throw Error(code::kRange, "Expected sigma large enough for the magnitude of query " + std::to_string(q) +
                                    " and the data (float32 log-weights, see README: Reliability) but received sigma " +
                                    std::to_string(sg) + " with |x - alpha centre| = " + std::to_string(xn) +
                                    " and max |y - centre| = " + std::to_string(yn));
    }
  }
}

namespace {

// The fused full pass over [begin, end) for every query of req.
PartialState dense_partial(const ReferenceSet& ref, const EstimateRequest& req, size_t begin, size_t end, bool inline_ok,
                           EstimateStats* stats) {
  const Plan plan = make_plan(ref, req.B, begin, end);
  std::vector<PartialState> states;
  states.reserve(plan.shards);
  for (size_t s = 0; s < plan.shards; ++s) states.push_back(empty_state(ref, req.B, req.weighted_sum));
  Counters counters;
  run_plan(ref, req, plan, states, inline_ok, counters);
  for (size_t s = 1; s < plan.shards; ++s) merge_partial(states[0], states[s]);
  states[0].count = static_cast<double>(end - begin);
  if (stats) {
    stats->refined += counters.refined.load();
    stats->decide_ns += counters.decide_ns.load();
    stats->scratch_bytes = std::max(stats->scratch_bytes, estimate_scratch_bytes(ref, req.B, req.weighted_sum));
    stats->dense_pairs += static_cast<uint64_t>(req.B) * (end - begin);
  }
  return std::move(states[0]);
}

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
  if (pr.query.empty()) return dense_partial(ref, req, begin, end, inline_ok, stats);
  PartialState st = empty_state(ref, req.B, req.weighted_sum);
  st.count = static_cast<double>(end - begin);
  std::vector<char> dense(req.B, 1);
  for (size_t i = 0; i < pr.query.size(); ++i) {
    const size_t g = pr.query[i];
    dense[g] = 0;
    st.max[g] = pr.max[i];
    st.sum[g] = pr.sum[i];
    st.sumsq[g] = pr.sumsq[i];
    st.sumyy[g] = pr.sumyy[i];
    if (!st.acc.empty()) std::copy(pr.acc.begin() + i * d, pr.acc.begin() + (i + 1) * d, st.acc.begin() + g * d);
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
  const PartialState ds = dense_partial(ref, sub, begin, end, inline_ok, stats);
  for (size_t i = 0; i < ids.size(); ++i) {
    const size_t g = ids[i];
    st.max[g] = ds.max[i];
    st.sum[g] = ds.sum[i];
    st.sumsq[g] = ds.sumsq[i];
    st.sumyy[g] = ds.sumyy[i];
    if (!st.acc.empty()) std::copy(ds.acc.begin() + i * d, ds.acc.begin() + (i + 1) * d, st.acc.begin() + g * d);
  }
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
  for (size_t i = 0; i < req.B * ref.dim(); ++i) {
    if (!std::isfinite(req.x[i])) {
      throw Error(code::kRange, "Expected finite values for x but received a non-finite value at index " +
                                    std::to_string(i));
    }
  }
  check_magnitudes(ref, req);
  if (stats) stats->pairs += static_cast<uint64_t>(req.B) * (end - begin);
  const PruneIndex* px = ref.prune_index();
  if (px && precision_policy().prune && end - begin >= kPruneMinRows) {
    return pruned_partial(ref, *px, req, begin, end, inline_ok, stats);
  }
  return dense_partial(ref, req, begin, end, inline_ok, stats);
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

void finalize_partial(const PartialState& st, const float* x, Coef alpha, Coef sigma, KernelSpec kernel,
                      EstimateOutputs out) {
  const size_t d = st.d;
  const double log_n = std::log(std::max(st.count, 1.0));
  std::vector<double> m(d);
  for (size_t q = 0; q < st.B; ++q) {
    const double al = alpha.at(q), sg = sigma.at(q);
    const double s0 = st.sum[q];
    double mm = 0;
    if (!st.acc.empty()) {
      for (size_t k = 0; k < d; ++k) {
        m[k] = st.acc[q * d + k] / s0;
        mm += m[k] * m[k];
      }
    }
    const double trace = std::max(0.0, st.sumyy[q] / s0 - mm);
    if (out.mean)
      for (size_t k = 0; k < d; ++k) out.mean[q * d + k] = static_cast<float>(st.origin[k] + m[k]);
    if (out.score) {
      // (alpha m - x) / s^2 with m and x relative to the origin: no cancellation of large values.
      const double inv = 1.0 / (sg * sg);
      for (size_t k = 0; k < d; ++k) {
        const double xr = static_cast<double>(x[q * d + k]) - al * st.origin[k];
        out.score[q * d + k] = static_cast<float>((al * m[k] - xr) * inv);
      }
    }
    double norm = 0;
    switch (kernel.kind) {
      case KernelKind::Gaussian: norm = GaussianKernel::log_norm(sg, d); break;
      case KernelKind::Poisson: norm = PoissonKernel::log_norm(sg, d, kernel.D); break;
      case KernelKind::RadialTanh: norm = RadialKernel<true>::log_norm(sg, d, 0); break;
      case KernelKind::RadialExp: norm = RadialKernel<false>::log_norm(sg, d, 0); break;
    }
    if (out.log_density) out.log_density[q] = static_cast<float>(st.max[q] + std::log(s0) + norm - log_n);
    if (out.ess) out.ess[q] = static_cast<float>(s0 * s0 / st.sumsq[q]);
    if (out.trace_cov) out.trace_cov[q] = static_cast<float>(trace);
    if (out.divergence) {
      out.divergence[q] = static_cast<float>((al * al * trace / (sg * sg) - static_cast<double>(d)) / (sg * sg));
    }
  }
}

void estimate(const ReferenceSet& ref, const EstimateRequest& req, EstimateOutputs out, bool inline_ok, EstimateStats* stats) {
  EstimateRequest r = req;
  r.begin = 0;
  r.end = ref.size();
  r.weighted_sum = (out.mean || out.score || out.trace_cov || out.divergence);
  r.sum_squares = out.ess != nullptr;
  r.sum_yy = out.trace_cov || out.divergence;
  const PartialState st = estimate_partial(ref, r, inline_ok, stats);
  finalize_partial(st, req.x, req.alpha, req.sigma, req.kernel, out);
}

void stable_targets(const ReferenceSet& ref, const float* x0, const EstimateRequest& req, float* score, bool inline_ok) {
  EstimateRequest r = req;
  r.begin = 0;
  r.end = ref.size();
  r.weighted_sum = true;
  const size_t d = ref.dim();
  for (size_t i = 0; i < checked_mul(req.B, d, "batch x dim"); ++i) {
    if (!std::isfinite(x0[i])) {
      throw Error(code::kRange, "Expected finite values for x0Batch but received a non-finite value at index " + std::to_string(i));
    }
  }
  PartialState st = estimate_partial(ref, r, inline_ok);
  // Merge each query's own clean point: a one-reference state with its exact log-weight.
  for (size_t q = 0; q < req.B; ++q) {
    Lane lane;
    lane.alpha = req.alpha.at(q);
    lane.sigma = req.sigma.at(q);
    const float* y = x0 + q * d;
    double r2 = 0, yy = 0;
    for (size_t k = 0; k < d; ++k) {
      const double t = static_cast<double>(req.x[q * d + k]) - lane.alpha * y[k];
      r2 += t * t;
      const double u = static_cast<double>(y[k]) - st.origin[k];
      yy += u * u;
    }
    double l = 0;
    switch (req.kernel.kind) {
      case KernelKind::Gaussian: l = GaussianKernel::logw(r2, lane); break;
      case KernelKind::Poisson:
        lane.kc = kernel_constant(req.kernel, d);
        l = PoissonKernel::logw(r2, lane);
        break;
      case KernelKind::RadialTanh:
      case KernelKind::RadialExp:
        lane.kc = kernel_constant(req.kernel, d);
        l = req.kernel.kind == KernelKind::RadialTanh ? RadialKernel<true>::logw(r2, lane) : RadialKernel<false>::logw(r2, lane);
        break;
    }
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
  finalize_partial(st, req.x, req.alpha, req.sigma, req.kernel, out);
}

size_t estimate_scratch_bytes(const ReferenceSet& ref, size_t B, bool weighted_sum) {
  if (B == 0 || ref.size() == 0) return 0;
  const Plan plan = make_plan(ref, B, 0, ref.size());
  const size_t d = ref.dim();
  const size_t per_item = scratch_bytes(plan.qb, plan.nt, d, weighted_sum);
  const size_t states = plan.shards * (B * (4 + (weighted_sum ? d : 0)) + d) * sizeof(double);
  const size_t concurrent = std::min<size_t>(plan.nqb * plan.shards, ThreadPool::global().threads());
  return states + concurrent * per_item;
}

}  // namespace sf
