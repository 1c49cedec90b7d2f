#include "prune.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "dispatch.hpp"
#include "estimator_kernels.hpp"
#include "philox.hpp"
#include "thread_pool.hpp"

namespace sf {
using namespace est;
namespace {

// ---------------------------------------------------------------------------------------
// Building the index: the leading principal directions by subspace iteration on a sample.

// Modified Gram-Schmidt, twice, on the k columns of Q (d x k, row-major). A column that
// vanishes (data of rank below k) becomes zero: U U^T is still an orthogonal projection.
void orthonormalize(std::vector<double>& Q, size_t d, size_t k) {
  std::vector<double> C(k * d);  // columns contiguous
  for (size_t i = 0; i < d; ++i)
    for (size_t c = 0; c < k; ++c) C[c * d + i] = Q[i * k + c];
  for (size_t c = 0; c < k; ++c) {
    double* v = C.data() + c * d;
    double n0 = 0;
    for (size_t i = 0; i < d; ++i) n0 += v[i] * v[i];
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t p = 0; p < c; ++p) {
        const double* u = C.data() + p * d;
        double dot = 0;
        for (size_t i = 0; i < d; ++i) dot += v[i] * u[i];
        for (size_t i = 0; i < d; ++i) v[i] -= dot * u[i];
      }
    }
    double nn = 0;
    for (size_t i = 0; i < d; ++i) nn += v[i] * v[i];
    const double inv = (nn > 1e-24 * n0 && nn > 0) ? 1.0 / std::sqrt(nn) : 0.0;
    for (size_t i = 0; i < d; ++i) v[i] *= inv;
  }
  for (size_t i = 0; i < d; ++i)
    for (size_t c = 0; c < k; ++c) Q[i * k + c] = C[c * d + i];
}

constexpr size_t kSampleRows = 2048;
constexpr size_t kChunkRows = 256;
constexpr int kIterations = 3;

}  // namespace

std::shared_ptr<const PruneIndex> build_prune_index(const float* Y, size_t n, size_t d, bool inline_ok) {
  if (n < kPruneMinRows || d < kPruneMinDim) return nullptr;
  auto px = std::make_shared<PruneIndex>();
  const size_t k = std::min<size_t>(64, d / 4), kp = k + 1;
  px->k = k;
  px->kp = kp;
  ThreadPool& pool = ThreadPool::global();
  const KernelTable& kt = kernels();

  const size_t ns = std::min(n, kSampleRows);
  std::vector<size_t> rows(ns);
  for (size_t i = 0; i < ns; ++i) rows[i] = i * n / ns;
  std::vector<double> Q(d * k);
  for (size_t i = 0; i < d * k; i += 4) {  // a fixed start: the index depends on the data only
    const Philox4x32 r = philox4x32_10(static_cast<uint32_t>(i), 0x5052u, 0, 0, 0x1234u, 0x9876u);
    for (size_t t = 0; t < 4 && i + t < d * k; ++t) Q[i + t] = static_cast<double>(r.v[t]) / 4294967296.0 - 0.5;
  }
  orthonormalize(Q, d, k);
  const size_t chunks = (ns + kChunkRows - 1) / kChunkRows;
  std::vector<double> part(chunks * d * k);
  for (int it = 0; it < kIterations; ++it) {
    // Q <- orth(Z^T Z Q) over the sample rows, summed per fixed chunk then in chunk order
    std::fill(part.begin(), part.end(), 0.0);
    pool.parallel_for(chunks, [&](size_t ch) {
      std::vector<double> t(k), yd(d);
      double* G = part.data() + ch * d * k;
      for (size_t r = ch * kChunkRows; r < std::min(ns, (ch + 1) * kChunkRows); ++r) {
        const float* y = Y + rows[r] * d;
        for (size_t i = 0; i < d; ++i) yd[i] = y[i];
        kt.project(yd.data(), d, Q.data(), k, t.data());
        kt.rank1(G, yd.data(), d, t.data(), k);
      }
    }, inline_ok);
    std::fill(Q.begin(), Q.end(), 0.0);
    for (size_t ch = 0; ch < chunks; ++ch)
      for (size_t i = 0; i < d * k; ++i) Q[i] += part[ch * d * k + i];
    orthonormalize(Q, d, k);
  }
  part.clear();
  part.shrink_to_fit();

  px->U = std::move(Q);
  px->A.assign(n * kp, 0.0f);
  px->aa.assign(n, 0.0f);
  const size_t nch = (n + kChunkRows - 1) / kChunkRows;
  std::vector<double> chunk_max(nch, 0.0);
  const double* U = px->U.data();
  pool.parallel_for(nch, [&](size_t ch) {
    std::vector<double> a(k), yd(d);
    for (size_t j = ch * kChunkRows; j < std::min(n, (ch + 1) * kChunkRows); ++j) {
      const float* y = Y + j * d;
      double yy = 0;
      for (size_t i = 0; i < d; ++i) {
        yd[i] = y[i];
        yy += yd[i] * yd[i];
      }
      kt.project(yd.data(), d, U, k, a.data());
      double a2 = 0;
      for (size_t c = 0; c < k; ++c) a2 += a[c] * a[c];
      float* out = px->A.data() + j * kp;
      double af2 = 0;
      for (size_t c = 0; c < k; ++c) {
        out[c] = static_cast<float>(a[c]);
        af2 += static_cast<double>(out[c]) * out[c];
      }
      out[k] = static_cast<float>(std::sqrt(std::max(0.0, yy - a2)));
      af2 += static_cast<double>(out[k]) * out[k];
      px->aa[j] = static_cast<float>(af2);
      chunk_max[ch] = std::max(chunk_max[ch], std::sqrt(yy));
    }
  }, inline_ok);
  for (double m : chunk_max) px->max_norm = std::max(px->max_norm, m);
  return px;
}

namespace {

// ---------------------------------------------------------------------------------------
// The pruned pass.

constexpr size_t kPruneTile = 1024;  // rows per tile of bounds
// A query goes to the full pass when more than 1/kDenseRatio of the rows survive its bound:
// an exact pair (double, a row fetched on its own) costs about 20 pairs of the fused GEMM
// (measured on MNIST, d = 784), so beyond that pruning no longer gains. With a floor.
constexpr size_t kDenseRatio = 64;
constexpr size_t kMinCandidates = 32;

float round_up(double v) {
  if (!(v < 3.0e38)) return std::numeric_limits<float>::infinity();
  return std::nextafter(static_cast<float>(v), std::numeric_limits<float>::infinity());
}

// Per query block: the lanes' augmented projections b^ (the GEMM operand) and thresholds.
struct BlockLanes {
  std::vector<Lane> lane;
  std::vector<float> X;                // lanes: kp x QB; rows: nq x kp
  std::vector<float> cA, cB, cC;       // bound = cA S + cB aa + cC = ||b^ - alpha a^||^2
  std::vector<double> margin;          // rounding allowance of a lane's float bound
};

BlockLanes make_block_lanes(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req,
                            const KernelTable& kt, size_t q0, size_t nq, bool lanes) {
  const size_t d = ref.dim(), kp = px.kp, k = px.k, QB = kt.qblock;
  const float* c = ref.centre();
  BlockLanes bl;
  bl.lane.resize(nq);
  bl.X.assign(lanes ? kp * QB : nq * kp, 0.0f);
  bl.cA.assign(QB, 0.0f);
  bl.cB.assign(QB, 0.0f);
  bl.cC.assign(QB, 0.0f);
  bl.margin.assign(nq, 0.0);
  std::vector<double> xd(d), b(kp);
  for (size_t q = 0; q < nq; ++q) {
    Lane& ln = bl.lane[q];  // the constants the kernels' logw and r2_window read
    ln.alpha = req.alpha.at(q0 + q);
    ln.sigma = req.sigma.at(q0 + q);
    ln.kc = kernel_constant(req.kernel, d);
    ln.valid = true;
    const double al = ln.alpha;
    const float* x = req.x + (q0 + q) * d;
    double x4[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < d; ++i) {
      xd[i] = static_cast<double>(x[i]) - al * c[i];
      x4[i & 3] += xd[i] * xd[i];
    }
    const double xx = (x4[0] + x4[1]) + (x4[2] + x4[3]);
    kt.project(xd.data(), d, px.U.data(), k, b.data());
    double b2 = 0;
    for (size_t t = 0; t < k; ++t) b2 += b[t] * b[t];
    b[k] = (al < 0 ? -1.0 : 1.0) * std::sqrt(std::max(0.0, xx - b2));
    double bf2 = 0;
    for (size_t t = 0; t < kp; ++t) {
      const float v = static_cast<float>(b[t]);
      bf2 += static_cast<double>(v) * v;
      (lanes ? bl.X[t * QB + q] : bl.X[q * kp + t]) = v;
    }
    bl.cA[q] = static_cast<float>(-2 * al);
    bl.cB[q] = static_cast<float>(al * al);
    bl.cC[q] = static_cast<float>(bf2);
    // Rounding of the float bound (the (k+1)-term dot product, the products and sums, the
    // float projections) and of the double projections: (k + 32) u of the largest magnitude
    // the terms can reach, four times over.
    const double mag = std::sqrt(xx) + std::fabs(al) * px.max_norm;
    bl.margin[q] = 4.0 * (static_cast<double>(kp) + 32.0) * kU * mag * mag + 1e-30;
  }
  return bl;
}

// Bounds of one tile of rows [jt, jt + nt) for the block's lanes into S (nt x QB).
void tile_bounds(const PruneIndex& px, const KernelTable& kt, const BlockLanes& bl, size_t nq, bool lanes, size_t jt,
                 size_t nt, float* S, float* lane_min = nullptr) {
  const float* Ab = px.A.data() + jt * px.kp;
  if (lanes) {
    kt.dot_lanes(bl.X.data(), Ab, nt, px.kp, S);
  } else {
    kt.dot_rows(bl.X.data(), nq, Ab, nt, px.kp, S);
  }
  kt.logits_gauss(S, nt, px.aa.data() + jt, bl.cA.data(), bl.cB.data(), bl.cC.data(), nullptr, lane_min);
}

// Bounds of every tile are kept for the second pass when they fit in this many floats per
// block; beyond, the second pass recomputes those it needs.
constexpr size_t kKeepBounds = size_t{1} << 20;

template <class K>
void pruned_block(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req, const KernelTable& kt,
                  size_t begin, size_t end, size_t q0, size_t nq, PrunedRows& out, PruneStats& stats) {
  const size_t d = ref.dim(), QB = kt.qblock;
  const bool lanes = nq >= kt.lanes;
  const float* c = ref.centre();
  const double window = std::log(static_cast<double>(ref.size()) * std::exp(1.0) / precision_policy().tolerance);
  const float kInf = std::numeric_limits<float>::infinity();
  // the bounds and the selection count as deciding time, up to pass 3 (or an early return)
  struct DecideTimer {
    uint64_t& ns;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    bool on = true;
    void stop() {
      if (on) ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
      on = false;
    }
    ~DecideTimer() { stop(); }
  } timer{stats.decide_ns};
  const BlockLanes bl = make_block_lanes(ref, px, req, kt, q0, nq, lanes);
  const size_t tiles = (end - begin + kPruneTile - 1) / kPruneTile;
  const bool keep = tiles * kPruneTile * QB <= kKeepBounds;
  // the bounds buffer is reused by the thread (every entry is written before it is read)
  static thread_local std::vector<float> Sall_tls;
  std::vector<float>& Sall = Sall_tls;  // one TLS look-up
  const size_t s_need = keep ? tiles * kPruneTile * QB : kPruneTile * QB;
  if (Sall.size() < s_need) Sall.resize(s_need);
  if (Sall.size() > 4 * s_need && Sall.size() > kKeepBounds) std::vector<float>(s_need).swap(Sall);
  std::vector<float> tmin(tiles * QB, kInf), T(QB, -kInf), counts(QB, 0.0f);
  std::vector<uint32_t> rowbits(kPruneTile);
  std::vector<double> best(nq, std::numeric_limits<double>::infinity());
  std::vector<char> active(nq, 1);
  size_t live = nq;
  const auto exact = [&](size_t q, size_t row) {
    return kt.exact_r2(req.x + (q0 + q) * d, ref.rows() + row * d, c, d, bl.lane[q].alpha);
  };
  const auto retire = [&](size_t q) {  // this query goes to the full pass
    active[q] = 0;
    T[q] = -kInf;
    --live;
  };

  // Pass 1: every bound, with per tile and lane the smallest. Whenever a lane's smallest bound
  // improves, the exact r^2 of that row tightens the lane's threshold T; each tile's rows under
  // T are counted. T only tightens, so the running count overestimates the final one: a lane
  // whose count exceeds twice its share of the cap cannot gain and goes to the full pass early.
  const size_t rows_in = end - begin;
  const double cap_rows = static_cast<double>(std::max<size_t>(kMinCandidates, rows_in / kDenseRatio));
  std::vector<float> lbest(nq, kInf);
  size_t seen = 0;
  for (size_t t = 0; t < tiles && live > 0; ++t) {
    const size_t jt = begin + t * kPruneTile, nt = std::min(kPruneTile, end - jt);
    float* S = keep ? Sall.data() + t * kPruneTile * QB : Sall.data();
    tile_bounds(px, kt, bl, nq, lanes, jt, nt, S, tmin.data() + t * QB);  // and each lane's smallest bound
    stats.bounded_pairs += nt * live;
    seen += nt;
    for (size_t q = 0; q < nq; ++q) {
      if (!active[q] || !(tmin[t * QB + q] < lbest[q])) continue;
      size_t jm = 0;
      while (jm + 1 < nt && !(S[jm * QB + q] == tmin[t * QB + q])) ++jm;
      lbest[q] = tmin[t * QB + q];
      const double r2 = exact(q, jt + jm);
      if (r2 < best[q]) {
        best[q] = r2;
        T[q] = round_up(K::r2_window(r2, window, bl.lane[q]) + bl.margin[q]);
      }
    }
    kt.select_le(S, nt, T.data(), rowbits.data(), counts.data());
    const float allowed = static_cast<float>(2.0 * cap_rows * static_cast<double>(seen) / static_cast<double>(rows_in)) +
                          static_cast<float>(kMinCandidates);
    for (size_t q = 0; q < nq; ++q)
      if (active[q] && counts[q] > allowed) retire(q);
  }
  if (live == 0) return;
  // Pass 2: how many rows each lane would compute exactly. Lanes over the cap go to the full
  // pass before any exact pair is spent on them.
  const float cap = static_cast<float>(cap_rows);
  std::fill(counts.begin(), counts.end(), 0.0f);
  const auto tile_needed = [&](size_t t) {
    for (size_t q = 0; q < nq; ++q)
      if (tmin[t * QB + q] <= T[q]) return true;
    return false;
  };
  const auto tile_of = [&](size_t t, size_t jt, size_t nt) {
    float* S = keep ? Sall.data() + t * kPruneTile * QB : Sall.data();
    if (!keep) {
      tile_bounds(px, kt, bl, nq, lanes, jt, nt, S);
      stats.bounded_pairs += nt * live;
    }
    return S;
  };
  for (size_t t = 0; t < tiles; ++t) {
    if (!tile_needed(t)) continue;
    const size_t jt = begin + t * kPruneTile, nt = std::min(kPruneTile, end - jt);
    kt.select_le(tile_of(t, jt, nt), nt, T.data(), rowbits.data(), counts.data());
  }
  for (size_t q = 0; q < nq; ++q)
    if (active[q] && counts[q] > cap) retire(q);
  if (live == 0) return;
  timer.stop();
  // Pass 3: the rows under the threshold, computed exactly, in row order; the threshold
  // tightens as better rows are found. The next candidate's row is prefetched.
  std::vector<std::vector<uint32_t>> cj(nq);
  std::vector<std::vector<double>> cl(nq);
  std::vector<uint32_t> rows;
  for (size_t t = 0; t < tiles && live > 0; ++t) {
    if (!tile_needed(t)) continue;
    const size_t jt = begin + t * kPruneTile, nt = std::min(kPruneTile, end - jt);
    const float* S = tile_of(t, jt, nt);
    if (!kt.select_le(S, nt, T.data(), rowbits.data(), counts.data())) continue;
    rows.clear();
    for (size_t j = 0; j < nt; ++j)
      if (rowbits[j]) rows.push_back(static_cast<uint32_t>(j));
    for (size_t i = 0; i < rows.size(); ++i) {
#if defined(__GNUC__)
      if (i + 1 < rows.size()) {
        const char* next = reinterpret_cast<const char*>(ref.rows() + (jt + rows[i + 1]) * d);
        for (size_t b = 0; b < std::min<size_t>(d * sizeof(float), 256); b += 64) __builtin_prefetch(next + b);
      }
#endif
      const size_t j = rows[i];
      uint32_t m = rowbits[j];
      while (m) {
        const size_t q = ctz32(m);
        m &= m - 1;
        if (q >= nq || !active[q] || !(S[j * QB + q] <= T[q])) continue;
        const double r2 = exact(q, jt + j);
        cj[q].push_back(static_cast<uint32_t>(jt + j));
        cl[q].push_back(K::logw(r2, bl.lane[q]));
        if (r2 < best[q]) {
          best[q] = r2;
          T[q] = round_up(K::r2_window(best[q], window, bl.lane[q]) + bl.margin[q]);
        }
      }
    }
  }
  // The partial states of the pruned queries, in double, candidates in row order.
  const float* yy = ref.sqnorms();
  for (size_t q = 0; q < nq; ++q) {
    if (!active[q]) continue;
    double mx = -std::numeric_limits<double>::infinity();
    for (double l : cl[q]) mx = std::max(mx, l);
    double s0 = 0, s1 = 0, s2 = 0;
    out.query.push_back(static_cast<uint32_t>(q0 + q));
    if (req.weighted_sum) out.acc.resize(out.acc.size() + d, 0.0);
    double* acc = req.weighted_sum ? out.acc.data() + out.acc.size() - d : nullptr;
    for (size_t i = 0; i < cj[q].size(); ++i) {
      // weights below e^-40 of the top are dropped, as in the fused pass (together at most
      // N e^-40 of the sum; w^2 and w y stay normal)
      if (!(cl[q][i] - mx > -40.0)) continue;
      const double w = std::exp(cl[q][i] - mx);
      s0 += w;
      s1 += w * w;
      if (acc) {  // ||y'||^2 in double too: traceCov = sumyy / sum - ||mean||^2 cancels
        const float* y = ref.rows() + static_cast<size_t>(cj[q][i]) * d;
        double y4[4] = {0, 0, 0, 0};
        for (size_t t = 0; t < d; ++t) {
          const double v = y[t];
          acc[t] += w * v;
          y4[t & 3] += v * v;
        }
        s2 += w * ((y4[0] + y4[1]) + (y4[2] + y4[3]));
      } else {
        s2 += w * static_cast<double>(yy[cj[q][i]]);
      }
    }
    out.max.push_back(mx);
    out.sum.push_back(s0);
    out.sumsq.push_back(req.sum_squares ? s1 : 0.0);
    out.sumyy.push_back(req.sum_yy ? s2 : 0.0);
    stats.exact_pairs += cj[q].size() + 1;
    stats.sparse_queries += 1;
  }
}

}  // namespace

void pruned_pass(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req, size_t begin, size_t end,
                 PrunedRows& out, PruneStats* stats, bool inline_ok) {
  const KernelTable& kt = kernels();
  const size_t QB = kt.qblock, nqb = (req.B + QB - 1) / QB;
  std::vector<PruneStats> per(nqb);
  std::vector<PrunedRows> rows(nqb);
  ThreadPool::global().parallel_for(nqb, [&](size_t bi) {
    const size_t q0 = bi * QB, nq = std::min(QB, req.B - q0);
    visit_kernel(req.kernel.kind, [&](auto unit) {
      pruned_block<decltype(unit)>(ref, px, req, kt, begin, end, q0, nq, rows[bi], per[bi]);
    });
  }, inline_ok);
  for (PrunedRows& r : rows) {  // blocks in query order
    out.query.insert(out.query.end(), r.query.begin(), r.query.end());
    for (auto [dst, src] : {std::pair{&out.max, &r.max}, {&out.sum, &r.sum}, {&out.sumsq, &r.sumsq}, {&out.sumyy, &r.sumyy},
                            {&out.acc, &r.acc}})
      dst->insert(dst->end(), src->begin(), src->end());
  }
  if (stats) {
    for (const PruneStats& p : per) {
      stats->exact_pairs += p.exact_pairs;
      stats->bounded_pairs += p.bounded_pairs;
      stats->sparse_queries += p.sparse_queries;
      stats->decide_ns += p.decide_ns;
    }
  }
}

}  // namespace sf
