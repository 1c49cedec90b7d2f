#include "prune.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>

#include "aligned.hpp"
#include "dispatch.hpp"
#include "estimator_kernels.hpp"
#include "finite.hpp"
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
  const size_t k1 = k >= 32 ? k / 4 : 0, kp1 = k1 ? k1 + 1 : 0;
  px->k1 = k1;
  px->kp1 = kp1;
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
        kt.project(yd.data(), 1, d, Q.data(), k, 0, k, t.data());
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
  px->A1.assign(n * kp1, 0.0f);
  px->aa1.assign(n, 0.0f);
  const size_t nch = (n + kChunkRows - 1) / kChunkRows;
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
      kt.project(yd.data(), 1, d, U, k, 0, k, a.data());
      const auto augmented = [&](size_t kk, float* out) {  // [a_0..a_kk-1, rho after kk], ||.||^2
        double a2 = 0, af2 = 0;
        for (size_t c = 0; c < kk; ++c) {
          a2 += a[c] * a[c];
          out[c] = static_cast<float>(a[c]);
          af2 += static_cast<double>(out[c]) * out[c];
        }
        out[kk] = static_cast<float>(std::sqrt(std::max(0.0, yy - a2)));
        af2 += static_cast<double>(out[kk]) * out[kk];
        return static_cast<float>(af2);
      };
      px->aa[j] = augmented(k, px->A.data() + j * kp);
      if (k1) px->aa1[j] = augmented(k1, px->A1.data() + j * kp1);
    }
  }, inline_ok);
  const size_t kf = k1 ? kp1 : kp;
  const std::vector<float>& Afirst = k1 ? px->A1 : px->A;
  px->Af.assign(kf * n, 0.0f);
  for (size_t j = 0; j < n; ++j)
    for (size_t t = 0; t < kf; ++t) px->Af[t * n + j] = Afirst[j * kf + t];
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
// Phase 1's allowance beyond a query's share of the cap: after the first tile its threshold
// comes from the few rows seen so far and is still loose.
constexpr size_t kPilotSlack = kPruneTile / 8;
// At most this many candidates are kept per query after a tile's check (beyond, the query
// goes to the full pass), so the working memory is O(B), whatever N: on sets of over about
// 60,000 rows this, not N/64, caps the exact pairs.
constexpr size_t kMaxCandidates = 2048;
// A lane may keep this many times its share of the base cap (pro rata of the rows bounded so
// far) before it goes to the full pass in phase 1. With two levels the candidates have passed
// the (k+1)-column bound and are finished in order of bound with an early stop, so even a
// distant held-out digit's few hundred cost less than its share of a full pass (measured on
// MNIST: 20% less thread time for held-out digits at sigma <= 0.05 with 8 than with 2, the
// same at sigma >= 0.5); with one level (d < 128) a lane's candidates are its first-level
// survivors and a larger allowance only delays the full pass (d = 64: 10-25% slower with 8).
constexpr double kAllowance2 = 8.0, kAllowance1 = 2.0;
// A lane with a wide window (broad) that keeps more than this share of a tile under its
// first-level bound goes to the full pass before its pairs are refined (measured on MNIST
// against 7/8: 18% less thread time for held-out digits at sigma 0.5, 5-8% for training digits
// at 0.5-1, the same elsewhere; 1/4 sent too many sparse queries to the full pass).
constexpr float kBroadShare = 0.5f;
// Before a lane with many candidates is judged, the exact r^2 of this many of its best-bounded
// candidates tighten its threshold.
constexpr size_t kTightenRows = 8;
// When at most 1/kGiveUp of a lanes block's queries are left in the scan, they go to the full
// pass too (measured on MNIST, B = 256: held-out digits at sigma 0.5, where 25-30 of a block's
// 32 leave after the first tile, 11% less CPU; 1/8 gained nothing; the same elsewhere).
constexpr size_t kGiveUp = 4;
// A lanes block goes wide (PrunedBlock::wide_tile) once a tile's first level selects more than
// this many pairs per row of the tile, summed over the block's queries (measured on MNIST:
// held-out digits 4-10% less time at sigma <= 0.2; with 1.5, training digits at sigma 0.2 went
// wide on their first tile, whose thresholds are still loose, and were 25% slower).
constexpr double kWidePairs = 3.0;
// A request of one sigma and one alpha with more query blocks than this runs phase 1 on its
// first kProbeBlocks blocks first; when no query of theirs is left in the scan (all gone to the
// full pass: MNIST at sigma 0.5-2, where a noisy query's bounds are loose by hundreds in r^2),
// the other blocks are not attempted and go to the full pass whole (their queries are alike:
// the same noise level). Two, so that the probe occupies two threads.
constexpr size_t kProbeBlocks = 2;

// The probe's verdict (pruned_pass_t): whether some probe block has a query left in the scan
// after its first tile. Blocks after the probe wait for it.
class Probe {
 public:
  explicit Probe(size_t blocks) : blocks_(blocks) {}
  void report(bool left_in_scan) {
    {
      std::lock_guard<std::mutex> g(mu_);
      ++reports_;
      any_left_ = any_left_ || left_in_scan;
    }
    cv_.notify_all();
  }
  // Blocks until some probe block has a query left (true) or every one has reported none.
  bool attempt() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return any_left_ || reports_ == blocks_; });
    return any_left_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const size_t blocks_;
  size_t reports_ = 0;
  bool any_left_ = false;
};

// One probe block's report, sent once: the first call's value, or none left when the block
// ends (or throws) before it reports, so that no later block waits forever.
class ProbeReport {
 public:
  explicit ProbeReport(Probe& p) : p_(p) {}
  ProbeReport(const ProbeReport&) = delete;
  ProbeReport& operator=(const ProbeReport&) = delete;
  ~ProbeReport() { (*this)(false); }
  void operator()(bool left_in_scan) {
    if (!sent_) p_.report(left_in_scan);
    sent_ = true;
  }

 private:
  Probe& p_;
  bool sent_ = false;
};

float round_up(double v) {
  if (!(v < 3.0e38)) return std::numeric_limits<float>::infinity();
  return std::nextafter(static_cast<float>(v), std::numeric_limits<float>::infinity());
}

// Per query block: the lanes' augmented projections b^ (the GEMM operands) and thresholds.
// With two levels a lane's projection starts with the first level's k1 directions; the other
// k - k1 (three quarters of the projection's work) are computed when the lane first needs the
// second level (complete_lanes, from second_level). A training digit at small sigma never does:
// the only pair its tiles leave it is its own row, whose exact r^2 the pilot already has.
struct BlockLanes {
  std::vector<Lane> lane;
  AlignedVec<float> X;                 // the first level's b^ (kp1 columns, kp with one level); lanes: kp x QB; rows: nq x kp
  std::vector<float> Xr;               // the full b^, rows (nq x kp), for the second level (complete lanes only)
  std::vector<float> cA, cB, cC, cC1;  // bound = cA S + cB aa + cC = ||b^ - alpha a^||^2 (cC1: first level)
  std::vector<double> margin;          // rounding allowance of a lane's float bound
  std::vector<double> bs, xx;          // the projections b (nq x k, double) and ||x'||^2
  uint32_t complete = 0;               // lanes whose Xr and cC hold the full b^
  AlignedVec<float> XF;                // the full b^ in the lanes layout (kp x QB), for wide tiles (empty before)
};

// One level of bounds as the kernels read it: the index's matrix row-major (A, the lanes
// layout) and column-major (Af, the rows layout), the rows' ||a^||^2, and the block's query
// operands b^ (XT: kp x qblock, lanes layout; Xr: nq x kp rows) with their ||b^||^2 (cC).
struct Level {
  size_t kp = 0;
  const float *A = nullptr, *aa = nullptr, *Af = nullptr, *XT = nullptr, *Xr = nullptr, *cC = nullptr;
};

// [b_0..b_kk-1, s rho_x after kk directions] as floats into out[t * stride]; returns its
// ||.||^2. b: the lane's projections (at least kk), xx = ||x'||^2, s = sign(alpha).
float augmented(const double* b, size_t kk, double xx, double s, float* out, size_t stride) {
  double b2 = 0, bf2 = 0;
  for (size_t t = 0; t <= kk; ++t) {
    if (t < kk) b2 += b[t] * b[t];
    const float v = static_cast<float>(t < kk ? b[t] : s * std::sqrt(std::max(0.0, xx - b2)));
    out[t * stride] = v;
    bf2 += static_cast<double>(v) * v;
  }
  return static_cast<float>(bf2);
}

// The full b^ of the lanes in mask not complete yet: their projections onto directions
// k1..k-1 (one call for all of them: in place when the lanes are consecutive, else through a
// gathered copy of their centred queries xd), then Xr and cC. Each projection's sums run in
// the same order whatever the lanes and columns, so the bits do not depend on when a lane is
// completed. (Completing every active lane of the block at once, when one needs it, was 7%
// slower for training digits at sigma 0.05 and no faster for held-out digits.)
void complete_lanes(BlockLanes& bl, const PruneIndex& px, const KernelTable& kt, const double* xd, size_t d,
                    uint32_t mask) {
  mask &= ~bl.complete;
  if (!mask) return;
  const size_t k = px.k, kp = px.kp, k1 = px.k1;
  std::vector<uint32_t> ids;
  for (uint32_t m = mask; m; m &= m - 1) ids.push_back(static_cast<uint32_t>(ctz32(m)));
  const size_t n = ids.size();
  if (ids.back() + 1 - ids.front() == n) {  // consecutive lanes: in place, no copies
    kt.project(xd + ids.front() * d, n, d, px.U.data(), k, k1, k, bl.bs.data() + ids.front() * k);
  } else {
    std::vector<double> v(n * d), b(n * k);
    for (size_t i = 0; i < n; ++i) std::copy(xd + ids[i] * d, xd + (ids[i] + 1) * d, v.begin() + i * d);
    kt.project(v.data(), n, d, px.U.data(), k, k1, k, b.data());
    for (size_t i = 0; i < n; ++i) std::copy(b.begin() + i * k + k1, b.begin() + (i + 1) * k, bl.bs.begin() + ids[i] * k + k1);
  }
  for (const uint32_t q : ids)
    bl.cC[q] = augmented(bl.bs.data() + q * k, k, bl.xx[q], bl.lane[q].alpha < 0 ? -1.0 : 1.0, bl.Xr.data() + q * kp, 1);
  bl.complete |= mask;
}

// xd, xxs: the block's centred queries x' = x - alpha c (nq x d, double) and their ||x'||^2.
BlockLanes make_block_lanes(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req,
                            const KernelTable& kt, size_t q0, size_t nq, bool lanes, const double* xd,
                            const std::vector<double>& xxs) {
  const size_t d = ref.dim(), kp = px.kp, k = px.k, QB = kt.qblock;
  const size_t k1 = px.k1 ? px.k1 : k, kp1 = k1 + 1;  // the GEMM's columns
  BlockLanes bl;
  bl.lane.resize(nq);
  bl.X.assign(lanes ? kp1 * QB : nq * kp1, 0.0f);
  bl.Xr.assign(nq * kp, 0.0f);
  bl.cA.assign(QB, 0.0f);
  bl.cB.assign(QB, 0.0f);
  bl.cC.assign(QB, 0.0f);
  bl.cC1.assign(QB, 0.0f);
  bl.margin.assign(nq, 0.0);
  bl.bs.assign(nq * k, 0.0);
  bl.xx = xxs;
  for (size_t q = 0; q < nq; ++q) bl.lane[q] = lane_constants(req, q0 + q, d);
  kt.project(xd, nq, d, px.U.data(), k, 0, k1, bl.bs.data());
  for (size_t q = 0; q < nq; ++q) {
    const double al = bl.lane[q].alpha, s = al < 0 ? -1.0 : 1.0, xx = xxs[q];
    const double* b = bl.bs.data() + q * k;
    bl.cC1[q] = augmented(b, k1, xx, s, lanes ? bl.X.data() + q : bl.X.data() + q * kp1, lanes ? QB : 1);
    if (!px.k1) bl.cC[q] = augmented(b, k, xx, s, bl.Xr.data() + q * kp, 1);  // one level: the same b^
    bl.cA[q] = static_cast<float>(-2 * al);
    bl.cB[q] = static_cast<float>(al * al);
    // Rounding of the float bound (the (k+1)-term dot product, the products and sums, the
    // float projections) and of the double projections: (k + 32) u of the largest magnitude
    // the terms can reach, four times over (either level).
    const double mag = std::sqrt(xx) + std::fabs(al) * ref.max_norm();
    bl.margin[q] = 4.0 * (static_cast<double>(kp) + 32.0) * kU * mag * mag + 1e-30;
  }
  if (!px.k1) bl.complete = nq >= 32 ? ~0u : (1u << nq) - 1;
  return bl;
}

// The level the scan starts with: A1 with two levels, A with one.
Level first_level(const PruneIndex& px, const BlockLanes& bl, bool lanes) {
  Level L;
  const bool two = px.k1 > 0;
  L.kp = two ? px.kp1 : px.kp;
  L.A = (two ? px.A1 : px.A).data();
  L.aa = (two ? px.aa1 : px.aa).data();
  L.Af = px.Af.data();
  L.XT = lanes ? bl.X.data() : nullptr;
  L.Xr = lanes ? nullptr : bl.X.data();
  L.cC = (two ? bl.cC1 : bl.cC).data();
  return L;
}

// The full (k+1)-column bound as a first level, in the lanes layout (wide tiles, PrunedBlock::bounds).
Level full_level(const PruneIndex& px, const BlockLanes& bl) {
  Level L;
  L.kp = px.kp;
  L.A = px.A.data();
  L.aa = px.aa.data();
  L.XT = bl.XF.data();
  L.cC = bl.cC.data();
  return L;
}

// One level's bounds of a tile of rows [jt, jt + nt) for the block's lanes (the lanes layout)
// into S (nt x QB), with each lane's smallest into lane_min; with T, also the pairs under it
// into rowbits and counts (returns whether any).
bool tile_bounds(const Level& L, const KernelTable& kt, const BlockLanes& bl, size_t jt, size_t nt, const float* T,
                 float* S, uint32_t* rowbits, float* counts, float* lane_min) {
  return kt.bounds_lanes(L.XT, L.A + jt * L.kp, nt, L.kp, L.aa + jt, bl.cA.data(), bl.cB.data(), L.cC, T, S, rowbits,
                         counts, lane_min);
}
// The lanes in mask: each one's bounds of the tile as a column (the rows layout) into
// col + q * kPruneTile, its smallest into lo[q]. Four lanes per pass over the index's block, so
// it streams from memory once per four queries, not once per query (MNIST, B = 4-12, sigma
// 0.01-0.2: held-out digits 7-25% less time, training digits up to 32%).
void col_bounds(const Level& L, const KernelTable& kt, const BlockLanes& bl, size_t n, size_t jt, size_t nt,
                uint32_t mask, float* col, float* lo) {
  const float* b[4];
  float cA[4], cB[4], cC[4], m[4];
  float* out[4];
  size_t ids[4];
  while (mask) {
    size_t g = 0;
    for (; g < 4 && mask; ++g, mask &= mask - 1) {
      const size_t q = ctz32(mask);
      ids[g] = q;
      b[g] = L.Xr + q * L.kp;
      cA[g] = bl.cA[q];
      cB[g] = bl.cB[q];
      cC[g] = L.cC[q];
      out[g] = col + q * kPruneTile;
    }
    kt.bounds_cols(L.Af + jt, n, nt, L.kp, g, b, cA, cB, cC, L.aa + jt, out, m);
    for (size_t i = 0; i < g; ++i) lo[ids[i]] = m[i];
  }
}

// One query block of the pruned pass, in two phases so that the cap on exact pairs can be
// chosen for the whole request between them (pruned_pass). Phase 1 keeps, per lane, only the
// candidate pairs (row, bound) under the lane's threshold at the time; as the threshold only
// tightens, every pair phase 2 needs is among them. A tile's bounds live in one buffer of
// kPruneTile x QB floats (128 KiB with AVX-512: cache-resident), never the whole request's.
template <class K>
class PrunedBlock {
 public:
  PrunedBlock(const ReferenceSet& ref_, const PruneIndex& px_, const EstimateRequest& req_, const KernelTable& kt_,
              size_t begin_, size_t end_, size_t q0_, size_t nq_)
      : ref(ref_), px(px_), req(req_), kt(kt_), begin(begin_), end(end_), q0(q0_), nq(nq_), d(ref_.dim()), QB(kt_.qblock),
        lanes(nq_ >= kt_.lanes), c(ref_.centre()),
        window(std::log(static_cast<double>(ref_.size()) * std::exp(1.0) / precision_policy().tolerance)),
        tiles((end_ - begin_ + kPruneTile - 1) / kPruneTile) {}

  // Phase 1: every bound, tile by tile. The exact r^2 of the row with a lane's smallest bound
  // (first level in the first tile, then the second level's) tightens its threshold T. The
  // pairs under T are kept as candidates and counted; T only tightens, so the running count
  // overestimates the final one: a lane whose count (after tighten_best) exceeds its allowance
  // (kAllowance2 or kAllowance1 times its share of the base cap) goes to the full pass early
  // (at large sigma after the first tile, so the bounds of the other tiles are not computed in
  // vain).
  // report, if given, is told as soon as it is known whether a query of the block is left in
  // the scan after its first tile (the probe, pruned_pass_t; it may be told again later, and
  // keeps the first).
  void bounds(double base_cap, ProbeReport* report = nullptr) {
    const auto t0 = std::chrono::steady_clock::now();
    active.assign(nq, 1);
    live = nq;
    T.assign(QB, -kInf);
    // the centred queries x' = x - alpha c in double and ||x'||^2, once for both steps below
    xd.reset(new double[nq * d]);  // every entry written below
    std::vector<double> xxs(nq);
    for (size_t q = 0; q < nq; ++q)
      xxs[q] = kt.centred_sq(req.x + (q0 + q) * d, c, req.alpha.at(q0 + q), d, xd.get() + q * d);
    broad_posteriors(xd.get(), xxs);
    if (live == 0) {
      xd.reset();
      stats.decide_ns += elapsed_ns(t0);
      return;
    }
    bl = make_block_lanes(ref, px, req, kt, q0, nq, lanes, xd.get(), xxs);
    // Not initialised: the lanes layout writes every entry of a tile before reading it, and
    // the rows layout reads only the selected pairs, which it writes first.
    AlignedArray<float> S(kPruneTile * QB);
    std::vector<float> tmin(QB), cnt(QB, 0.0f);
    lbest.assign(nq, kInf);
    rowbits.assign(kPruneTile, 0);
    best.assign(nq, std::numeric_limits<double>::infinity());
    best_row.assign(nq, kNoRow);
    lbest2.assign(QB, kInf);
    cand.assign(nq, {});
    const size_t rows_in = end - begin;
    size_t seen = 0;
    std::vector<float> col(lanes ? 0 : nq * kPruneTile);
    if (px.k1) pilot(S.get(), col.data(), tmin);
    const Level L1 = first_level(px, bl, lanes);
    for (size_t t = 0; t < tiles && live > 0; ++t) {
      if (report && t == 1) (*report)(true);  // a query left after the first tile (live > 0)
      const size_t jt = begin + t * kPruneTile, nt = std::min(kPruneTile, end - jt);
      seen += nt;
      const float allowed = std::min(
          static_cast<float>((px.k1 ? kAllowance2 : kAllowance1) * base_cap * static_cast<double>(seen) /
                             static_cast<double>(rows_in)) +
              static_cast<float>(kMinCandidates + kPilotSlack),
          static_cast<float>(kMaxCandidates));
      // The lanes that can select a pair of this tile: with the pilot's tile minima, those
      // whose minimum is not over their threshold (T only tightened since; NaN counts as needed). A
      // tile no lane needs is skipped (a block of training digits needs, per tile, only the
      // lanes whose own row lies in it). Bounding the few needed lanes of a lanes block in the
      // rows layout instead was measured and was no faster (10% slower at sigma 0.01).
      uint32_t need = 0;
      for (size_t q = 0; q < nq; ++q)
        if (active[q] && (tile_min.empty() || !(tile_min[t * QB + q] > T[q]))) need |= 1u << q;
      if (!need) continue;
      if (!lanes) {
        rows_tile(L1, S.get(), col.data(), jt, nt, cnt, need);
      } else if (wide()) {
        wide_tile(S.get(), jt, nt, cnt, tmin);
      } else {
        // With two levels (after the pilot) the selection under T runs in the same pass as
        // the bounds; with one level a lane's new smallest bound tightens T first.
        std::fill(scratch.begin(), scratch.end(), 0.0f);
        bool any = tile_bounds(L1, kt, bl, jt, nt, px.k1 ? T.data() : nullptr, S.get(), rowbits.data(), scratch.data(),
                               tmin.data());
        if (!px.k1) {
          tighten_at_new_minima(S.get(), tmin, jt, nt, lbest);
          any = kt.select_le(S.get(), nt, T.data(), rowbits.data(), scratch.data());
        }
        if (any && retire_broad(nt)) any = reselect(S.get(), nt);
        if (any && !px.k1 && retire_over(cnt, allowed)) any = reselect(S.get(), nt);
        if (any && px.k1 && selected_pairs() > kWidePairs * static_cast<double>(nt)) {
          // too many pairs for the second level one by one: this tile and the rest go wide
          wide_tile(S.get(), jt, nt, cnt, tmin);
        } else if (any) {
          second_level(S.get(), jt, nt, scratch.data());
          // with many pairs per row (held-out digits) one vector pass beats the sparse recount
          if (kt.select_le(S.get(), nt, T.data(), rowbits.data(), cnt.data())) keep_candidates(S.get(), jt, nt);
        }
      }
      for (size_t q = 0; q < nq; ++q) {
        if (!active[q] || !(cnt[q] > allowed)) continue;
        cnt[q] = static_cast<float>(compact(q));  // the count under the threshold as it is now
        if (cnt[q] > allowed) cnt[q] = static_cast<float>(tighten_best(q));
        if (cnt[q] > allowed) retire(q);
      }
      // Most of a lanes block gone to the full pass: the rest follow (in the full pass they
      // fill the blocks the others leave part-empty, where the scan would bound every lane of
      // the block for them alone).
      if (lanes && live > 0 && live * kGiveUp <= nq)
        for (size_t q = 0; q < nq; ++q)
          if (active[q]) retire(q);
    }
    if (report) (*report)(live > 0);
    // the rows with the smallest bounds of a lane with many candidates are the likeliest to be
    // its nearest: their exact r^2 tighten the threshold before the cap is chosen
    for (size_t q = 0; q < nq; ++q)
      if (active[q] && cand[q].size() > kMinCandidates) tighten_best(q);
    xd.reset();
    stats.decide_ns += elapsed_ns(t0);
  }

  // Two levels: before the scan, one pass of the first level over the whole range keeps each
  // lane's smallest bound per tile (tile_min, for the scan's tile skip) and its smallest overall,
  // whose row's exact r^2 sets the lane's threshold. The threshold the scan starts from then
  // does not depend on where in the set a query's nearest rows lie (a training digit's own row
  // has its smallest bound; without the pilot a query whose row lay late in the set kept most
  // of the earlier tiles and went to the full pass). It costs one more pass of the first level:
  // (k/4 + 1) / d of the full scan's work (2% at d = 784, at most 7%). With one level (d < 128)
  // a second pass over its d/4 + 1 columns would cost a quarter of a full scan (a separate pilot
  // level of k/4 directions, measured on d = 64 Gaussian data, lost as much as it gained), so a
  // lane's new smallest bound tightens its threshold during the scan instead.
  void pilot(float* S, float* col, std::vector<float>& tmin) {
    const Level L0 = first_level(px, bl, lanes);
    std::vector<float> pmin(nq, kInf);
    std::vector<uint32_t> prow(nq, static_cast<uint32_t>(begin)), row(QB);
    tile_min.assign(tiles * QB, -kInf);
    for (size_t t = 0; t < tiles; ++t) {
      const size_t jt = begin + t * kPruneTile, nt = std::min(kPruneTile, end - jt);
      if (lanes) {
        tile_bounds(L0, kt, bl, jt, nt, nullptr, S, rowbits.data(), scratch.data(), tmin.data());
        std::copy(tmin.begin(), tmin.begin() + static_cast<std::ptrdiff_t>(nq), tile_min.begin() + static_cast<std::ptrdiff_t>(t * QB));
        uint32_t lower = 0;
        for (size_t q = 0; q < nq; ++q)
          if (active[q] && tmin[q] < pmin[q]) lower |= 1u << q;
        if (!lower) continue;
        first_rows_at(S, tmin, nt, lower, row.data());
        for (uint32_t m = lower; m; m &= m - 1) {
          const size_t q = ctz32(m);
          pmin[q] = tmin[q];
          prow[q] = static_cast<uint32_t>(jt + row[q]);
        }
      } else {
        uint32_t act = 0;
        for (size_t q = 0; q < nq; ++q)
          if (active[q]) act |= 1u << q;
        col_bounds(L0, kt, bl, ref.size(), jt, nt, act, col, tile_lo.data());
        for (size_t q = 0; q < nq; ++q) {
          if (!active[q]) continue;
          const float* cq = col + q * kPruneTile;
          const float lo = tile_lo[q];
          tile_min[t * QB + q] = lo;
          if (!(lo < pmin[q])) continue;
          pmin[q] = lo;
          prow[q] = static_cast<uint32_t>(jt + first_at(cq, lo, nt));
        }
      }
    }
    for (size_t q = 0; q < nq; ++q)  // the row with the smallest bound in the whole range (any row is an upper bound)
      if (active[q]) tighten(q, prow[q]);
  }

  // One tile in the rows layout (fewer queries than a vector has lanes): each lane's first-level
  // bounds as one contiguous column (vectorised over rows), its selection under its threshold,
  // the same decisions as retire_broad (too_broad); only the selected pairs are copied into S
  // for the second level and the candidates (the rest of S is never read).
  void rows_tile(const Level& L1, float* S, float* col, size_t jt, size_t nt, std::vector<float>& cnt, uint32_t lanes_in) {
    std::fill(rowbits.begin(), rowbits.begin() + static_cast<std::ptrdiff_t>(nt), 0u);
    std::fill(scratch.begin(), scratch.end(), 0.0f);  // the selected pairs per lane
    bool any = false;
    uint32_t in = 0;
    for (size_t q = 0; q < nq; ++q)
      if (active[q] && (lanes_in >> q & 1u)) in |= 1u << q;
    col_bounds(L1, kt, bl, ref.size(), jt, nt, in, col, tile_lo.data());
    for (size_t q = 0; q < nq; ++q) {
      if (!(in >> q & 1u)) continue;
      float* cq = col + q * kPruneTile;
      const float lo = tile_lo[q];
      if (!px.k1 && lo < lbest[q]) {  // one level, as in the lanes layout
        lbest[q] = lo;
        tighten_at(q, lo, jt, cq, nt);
      }
      const uint32_t bit = 1u << q;
      // the selected pairs' bounds go straight into S (the second level reads them there)
      const size_t n = kt.select_col(cq, nt, T[q], bit, rowbits.data(), S + q, QB);
      if (too_broad(q, static_cast<float>(n), nt)) {
        retire(q);
        for (size_t j = 0; j < nt; ++j) rowbits[j] &= ~bit;
        continue;
      }
      if (n == 0) continue;
      any = true;
      scratch[q] = static_cast<float>(n);
    }
    if (!any) return;
    second_level(S, jt, nt, scratch.data());
    recount_and_keep(S, jt, nt, cnt);
  }

  // After the second level: the selected pairs still under the (tightened) threshold, counted
  // per lane as select_le counts them (no other pair of the tile can be: its first-level bound
  // was over an earlier, looser threshold), kept as candidates.
  void recount_and_keep(const float* S, size_t jt, size_t nt, std::vector<float>& cnt) {
    bool kept = false;
    for (size_t j = 0; j < nt; ++j) {
      uint32_t keep = 0;
      for (uint32_t m = rowbits[j]; m; m &= m - 1) {
        const size_t q = ctz32(m);
        if (active[q] && S[j * QB + q] <= T[q]) {
          keep |= 1u << q;
          cnt[q] += 1.0f;
        }
      }
      rowbits[j] = keep;
      kept = kept || keep != 0;
    }
    if (kept) keep_candidates(S, jt, nt);
  }

  // Rows a lane would compute exactly (-1: already handed to the full pass).
  float count(size_t q) const {
    if (!active[q]) return -1.0f;
    size_t n = 0;
    for (const Candidate& e : cand[q]) n += e.bound <= T[q] ? 1 : 0;
    return static_cast<float>(n);
  }

  // Phase 2: lanes over the cap go to the full pass; the others compute their candidates
  // exactly in order of increasing bound (ties by row), the threshold tightening as better
  // rows are found: the first candidate whose bound exceeds the threshold ends the lane, since
  // every later one's bound does too. The state is then formed in double, in row order.
  void finish(float cap, StateSink& sink, std::vector<char>& finished) {
    for (size_t q = 0; q < nq; ++q)
      if (active[q] && count(q) > cap) retire(q);
    std::vector<Candidate> cs;
    std::vector<std::pair<uint32_t, double>> done;  // (row, r^2)
    std::vector<uint32_t> cj;
    std::vector<double> cl;
    std::vector<double> acc(req.weighted_sum ? d : 0), dscratch(d);
    for (size_t q = 0; q < nq; ++q) {
      if (!active[q]) continue;
      cs.clear();
      for (const Candidate& e : cand[q])
        if (e.bound <= T[q]) cs.push_back(e);
      std::sort(cs.begin(), cs.end(), by_bound);
      done.clear();
      for (size_t i = 0; i < cs.size() && cs[i].bound <= T[q]; ++i) {
#if defined(__GNUC__)
        if (i + 1 < cs.size()) {  // the next candidate row's first lines
          const char* next = reinterpret_cast<const char*>(ref.rows() + static_cast<size_t>(cs[i + 1].row) * d);
          for (size_t b = 0; b < d * sizeof(float); b += 64) __builtin_prefetch(next + b);
        }
#endif
        // (the row of the best exact r^2 so far is not computed twice: the same function gave best)
        const double r2 = cs[i].row == best_row[q] ? best[q] : exact(q, cs[i].row);
        done.emplace_back(cs[i].row, r2);
        improve(q, r2, cs[i].row);
      }
      std::sort(done.begin(), done.end());
      cj.clear();
      cl.clear();
      for (const auto& [row, r2] : done) {
        cj.push_back(row);
        cl.push_back(K::logw(r2, bl.lane[q]));
      }
      write_state(q, cj, cl, acc, dscratch.data(), sink);
      finished[q0 + q] = 1;
    }
    cand.clear();
  }

  PruneStats stats;

 private:
  struct Candidate {
    uint32_t row;
    float bound;
  };
  static bool by_bound(const Candidate& a, const Candidate& b) { return a.bound < b.bound || (a.bound == b.bound && a.row < b.row); }

  static uint64_t elapsed_ns(std::chrono::steady_clock::time_point t0) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  }
  void improve(size_t q, double r2, size_t row) {  // a new exact r^2: the threshold tightens
    if (r2 < best[q]) {
      best[q] = r2;
      best_row[q] = static_cast<uint32_t>(row);
      T[q] = round_up(K::r2_window(r2, window, bl.lane[q]) + bl.margin[q]);
    }
  }
  void tighten(size_t q, size_t row) { improve(q, exact(q, row), row); }
  // After a tile's first-level selection (rowbits, per-lane counts in scratch): a lane that
  // keeps over half the tile with a wide window (broad) has a broad posterior: it goes to the
  // full pass first, before its pairs are refined or kept one by one (this only decides where
  // the work is done). Returns whether any lane went.
  bool retire_broad(size_t nt) {
    bool retired = false;
    for (size_t q = 0; q < nq; ++q)
      if (active[q] && too_broad(q, scratch[q], nt)) {
        retire(q);
        retired = true;
      }
    return retired;
  }
  // One level: a lane whose pairs selected so far (cnt) and in this tile (scratch) exceed its
  // allowance goes to the full pass before they are kept and tightened (its threshold already
  // comes from its smallest bound so far; measured on d = 64 Gaussian data: 8-13% less CPU for
  // held-out and spread training queries at sigma 0.01, 7% at training 0.5, the same
  // elsewhere). Returns whether any lane went.
  bool retire_over(const std::vector<float>& cnt, float allowed) {
    bool retired = false;
    for (size_t q = 0; q < nq; ++q)
      if (active[q] && cnt[q] + scratch[q] > allowed) {
        retire(q);
        retired = true;
      }
    return retired;
  }
  // The selection again after lanes retired (their thresholds are now -inf); whether any pair.
  bool reselect(const float* S, size_t nt) {
    std::fill(scratch.begin(), scratch.end(), 0.0f);
    return kt.select_le(S, nt, T.data(), rowbits.data(), scratch.data());
  }
  // Whether a lane's window is wide against its best r^2 (over 1% of it): then most of a tile
  // under its first-level bound means a broad posterior. A narrow window over a distant
  // query (a held-out digit far from every reference) means loose first-level bounds instead:
  // the second level still prunes it.
  bool broad(size_t q) const { return static_cast<double>(T[q]) - best[q] > 0.01 * best[q]; }
  // A lane keeping n of a tile's nt rows under its first-level bound goes to the full pass.
  bool too_broad(size_t q, float n, size_t nt) const { return n > kBroadShare * static_cast<float>(nt) && broad(q); }
  // The row of a tile holding a lane's smallest first-level bound lo (the first such row; v:
  // the lane's bounds over the tile) tightens its threshold, unless it cannot improve it.
  void tighten_at(size_t q, float lo, size_t jt, const float* v, size_t nt) {
    if (lo >= best[q]) return;  // the row's exact r^2 >= its bound: it cannot improve best
    tighten(q, jt + first_at(v, lo, nt));
  }
  // The first j < nt with v[j] == lo (nt - 1 when none: a NaN minimum).
  static size_t first_at(const float* v, float lo, size_t nt) {
    size_t j = 0;
    while (j + 1 < nt && !(v[j] == lo)) ++j;
    return j;
  }
  // The first row of a tile (S, nt x QB) holding each lane's smallest bound tmin[q], for the
  // lanes of mask, into row[q] (one vector pass of select_le under tmin, not one strided scan
  // per lane); nt - 1 where no row does (a NaN minimum).
  void first_rows_at(const float* S, const std::vector<float>& tmin, size_t nt, uint32_t mask, uint32_t* row) {
    std::vector<float> lo(QB, -kInf), counts(QB, 0.0f);
    for (uint32_t m = mask; m; m &= m - 1) {
      lo[ctz32(m)] = tmin[ctz32(m)];
      row[ctz32(m)] = static_cast<uint32_t>(nt - 1);
    }
    kt.select_le(S, nt, lo.data(), rowbits.data(), counts.data());
    for (size_t j = 0; j < nt && mask; ++j)
      for (uint32_t m = rowbits[j] & mask; m; m &= m - 1) {
        mask &= ~(1u << ctz32(m));
        row[ctz32(m)] = static_cast<uint32_t>(j);
      }
  }
  // The lanes layout's tighten_at for the active lanes with want[q] whose tile minimum is under
  // their best exact r^2 (else the row cannot improve it).
  void tighten_at_lanes(const float* S, const std::vector<float>& tmin, size_t jt, size_t nt, const std::vector<char>& want) {
    uint32_t need = 0;
    for (size_t q = 0; q < nq; ++q)
      if (active[q] && want[q] && !(tmin[q] >= best[q])) need |= 1u << q;
    if (!need) return;
    std::vector<uint32_t> row(QB);
    first_rows_at(S, tmin, nt, need, row.data());
    for (uint32_t m = need; m; m &= m - 1) tighten(ctz32(m), jt + row[ctz32(m)]);
  }

  // Whether the block's scan has gone wide: its first wide tile set the lanes-layout b^ (XF).
  bool wide() const { return !bl.XF.empty(); }
  // The pairs the first level selected in a tile (rowbits' counts, in scratch).
  double selected_pairs() const {
    double n = 0;
    for (size_t q = 0; q < nq; ++q) n += scratch[q];
    return n;
  }
  // A wide tile: the full (k+1)-column bound for every lane in one dense pass, instead of the
  // first level's and then the second level's pair by pair. Once a tile's first level leaves a
  // lanes block more than kWidePairs pairs per row (held-out digits: hundreds of rows per lane
  // out of 9,000), that tile and the rest of the scan go wide: the second level's dot products
  // of row data fetched at random cost more than the dense pass over every pair (a training
  // digit, whose first level leaves it its own row, never goes wide). Every active lane is
  // completed on the first wide tile; lanes retired since keep a threshold of -inf, so their
  // columns select nothing. The row of a lane's smallest bound in the tile tightens its
  // threshold before the selection, as the second level's does.
  void wide_tile(float* S, size_t jt, size_t nt, std::vector<float>& cnt, std::vector<float>& tmin) {
    if (bl.XF.empty()) {
      uint32_t act = 0;
      for (size_t q = 0; q < nq; ++q)
        if (active[q]) act |= 1u << q;
      complete_lanes(bl, px, kt, xd.get(), d, act);
      bl.XF.assign(px.kp * QB, 0.0f);
      for (size_t q = 0; q < nq; ++q)
        if (active[q])
          for (size_t t = 0; t < px.kp; ++t) bl.XF[t * QB + q] = bl.Xr[q * px.kp + t];
    }
    const Level LF = full_level(px, bl);
    ++stats.wide_tiles;
    std::fill(scratch.begin(), scratch.end(), 0.0f);
    bool any = tile_bounds(LF, kt, bl, jt, nt, T.data(), S, rowbits.data(), scratch.data(), tmin.data());
    if (any && retire_broad(nt)) any = reselect(S, nt);
    if (!any) return;
    tighten_at_new_minima(S, tmin, jt, nt, lbest2);
    if (kt.select_le(S, nt, T.data(), rowbits.data(), cnt.data())) keep_candidates(S, jt, nt);
  }

  // The lanes whose smallest bound in a tile (tmin) is below their smallest so far (lowest,
  // updated here) tighten their thresholds at the row holding it (tighten_at_lanes, which
  // skips retired lanes).
  void tighten_at_new_minima(const float* S, const std::vector<float>& tmin, size_t jt, size_t nt,
                             std::vector<float>& lowest) {
    std::vector<char> lower(nq, 0);
    for (size_t q = 0; q < nq; ++q)
      if (tmin[q] < lowest[q]) {
        lowest[q] = tmin[q];
        lower[q] = 1;
      }
    tighten_at_lanes(S, tmin, jt, nt, lower);
  }

  // The second level: the selected pairs (rowbits) get the k-direction bound; the row with a
  // lane's smallest so far tightens its threshold.
  void second_level(float* S, size_t jt, size_t nt, const float* counts) {
    if (!px.k1) return;
    // counts: the selected pairs per lane. A lane whose only pair is the row of its best exact
    // r^2 so far (a training digit at small sigma: its own row, found by the pilot) needs no
    // second-level bound: that row is computed exactly anyway, and its r^2 is already known.
    uint32_t refine = 0, selected = 0;
    for (size_t q = 0; q < nq; ++q) {
      if (!(counts[q] > 0.0f)) continue;
      selected |= 1u << q;
      const size_t br = best_row[q];
      const bool known = counts[q] == 1.0f && br >= jt && br < jt + nt && (rowbits[br - jt] >> q & 1u);
      if (!known) refine |= 1u << q;
    }
    if (!refine) return;
    complete_lanes(bl, px, kt, xd.get(), d, refine);
    const uint32_t* bits = rowbits.data();
    if (refine != selected) {
      for (size_t j = 0; j < nt; ++j) refine_bits[j] = rowbits[j] & refine;
      bits = refine_bits.data();
    }
    std::fill(lmin2.begin(), lmin2.end(), kInf);
    kt.refine_bounds(S, nt, bits, bl.Xr.data(), px.A.data() + jt * px.kp, px.kp, px.aa.data() + jt,
                     bl.cA.data(), bl.cB.data(), bl.cC.data(), lmin2.data(), larg2.data());
    for (size_t q = 0; q < nq; ++q) {
      if (!active[q] || !(lmin2[q] < lbest2[q])) continue;
      lbest2[q] = lmin2[q];
      tighten(q, jt + larg2[q]);
    }
  }
  // The exact r^2 of a lane's kTightenRows best-bounded candidates tighten its threshold;
  // returns the count of candidates left under it.
  size_t tighten_best(size_t q) {
    std::vector<Candidate>& cs = cand[q];
    Candidate top[kTightenRows];
    const size_t m = static_cast<size_t>(std::partial_sort_copy(cs.begin(), cs.end(), top, top + kTightenRows, by_bound) - top);
    for (size_t i = 0; i < m && top[i].bound <= T[q]; ++i) tighten(q, top[i].row);
    return compact(q);
  }
  size_t compact(size_t q) {  // drops the candidates the tightened threshold excludes
    std::vector<Candidate>& cs = cand[q];
    cs.erase(std::remove_if(cs.begin(), cs.end(), [&](const Candidate& e) { return !(e.bound <= T[q]); }), cs.end());
    return cs.size();
  }
  void keep_candidates(const float* S, size_t jt, size_t nt) {  // the pairs rowbits selected
    for (size_t j = 0; j < nt; ++j)
      for (uint32_t m = rowbits[j]; m; m &= m - 1) {
        const size_t q = ctz32(m);
        if (q < nq && active[q]) cand[q].push_back({static_cast<uint32_t>(jt + j), S[j * QB + q]});
      }
  }
  double exact(size_t q, size_t row) const {
    return kt.exact_r2(req.x + (q0 + q) * d, ref.rows() + row * d, c, d, bl.lane[q].alpha);
  }
  // Before any bound: r^2 to 16 evenly spaced rows, in float (one small GEMM). When 6 of them
  // lie within the window of the best of them, the posterior is broad (large sigma) and the
  // query goes to the full pass without projecting it (a heuristic: it only decides where the
  // work is done, so float rounding in r^2 = |x'|^2 - 2 alpha x'.y' + alpha^2 |y'|^2 is harmless).
  void broad_posteriors(const double* xd, const std::vector<double>& xx) {
    constexpr size_t kSample = 16, kBroad = 6;
    const size_t rows_in = end - begin;
    if (rows_in < 4 * kSample) return;
    std::vector<float> ys(kSample * d), xs(nq * d), S(kSample * QB);
    float yy[kSample];
    for (size_t i = 0; i < kSample; ++i) {
      const size_t j = begin + i * rows_in / kSample;
      std::copy(ref.rows() + j * d, ref.rows() + (j + 1) * d, ys.begin() + i * d);
      yy[i] = ref.sqnorms()[j];
    }
    std::vector<Lane> ln(nq);
    for (size_t q = 0; q < nq; ++q) ln[q] = lane_constants(req, q0 + q, d);
    for (size_t i = 0; i < nq * d; ++i) xs[i] = static_cast<float>(xd[i]);  // x' in float32 for the GEMM
    kt.dot_rows(xs.data(), nq, ys.data(), kSample, d, S.data());
    double r2[kSample];
    for (size_t q = 0; q < nq; ++q) {
      const double al = ln[q].alpha;
      double lo = std::numeric_limits<double>::infinity();
      for (size_t i = 0; i < kSample; ++i) {
        r2[i] = std::max(0.0, xx[q] - 2.0 * al * S[i * QB + q] + al * al * yy[i]);
        lo = std::min(lo, r2[i]);
      }
      const double t = K::r2_window(lo, window, ln[q]);
      size_t within = 0;
      for (size_t i = 0; i < kSample; ++i) within += r2[i] <= t ? 1 : 0;
      if (within >= kBroad) retire(q);
    }
  }

  void retire(size_t q) {  // this query goes to the full pass
    active[q] = 0;
    T[q] = -kInf;
    --live;
    if (q < cand.size()) std::vector<Candidate>().swap(cand[q]);
  }
  // The partial state of one query from its exactly computed rows, in double, into the sink.
  void write_state(size_t q, const std::vector<uint32_t>& cj, const std::vector<double>& cl, std::vector<double>& accbuf,
                   double* scratch, StateSink& sink) {
    double mx = -std::numeric_limits<double>::infinity();
    for (double l : cl) mx = std::max(mx, l);
    double s0 = 0, s1 = 0, s2 = 0;
    double* acc = req.weighted_sum ? accbuf.data() : nullptr;
    bool first = true;  // the first row kept sets acc (no zero fill of d doubles per query)
    for (size_t i = 0; i < cj.size(); ++i) {
      // weights below e^-40 of the top are dropped (the fused pass: below e^-f, f <= 40; together at most
      // N e^-40 of the sum; w^2 and w y stay normal)
      if (!(cl[i] - mx > -40.0)) continue;
      const double w = std::exp(cl[i] - mx);
      s0 += w;
      s1 += w * w;
      if (acc) {
        const float* y = ref.rows() + static_cast<size_t>(cj[i]) * d;
        if (first) {
          for (size_t t = 0; t < d; ++t) acc[t] = w * static_cast<double>(y[t]);
        } else {
          for (size_t t = 0; t < d; ++t) acc[t] += w * static_cast<double>(y[t]);
        }
        first = false;
        // ||y'||^2 in double too (traceCov = sumyy / sum - ||mean||^2 cancels), in four chains
        if (req.sum_yy) s2 += w * sq_norm(y, d);
      } else {
        s2 += w * static_cast<double>(ref.sqnorms()[cj[i]]);
      }
    }
    QueryState qs;
    qs.max = mx;
    qs.sum = s0;
    qs.sumsq = req.sum_squares ? s1 : 0.0;
    qs.sumyy = req.sum_yy ? s2 : 0.0;
    if (acc && first) std::fill(accbuf.begin(), accbuf.end(), 0.0);  // no row kept (never in practice)
    qs.acc = acc;
    sink.put(q0 + q, qs, scratch);
    stats.exact_pairs += cj.size();  // the best-bounded rows of phase 1 are among them
    stats.sparse_queries += 1;
  }

  const ReferenceSet& ref;
  const PruneIndex& px;
  const EstimateRequest& req;
  const KernelTable& kt;
  const size_t begin, end, q0, nq, d, QB;
  const bool lanes;
  const float* c;
  const double window;
  const size_t tiles;
  static constexpr float kInf = std::numeric_limits<float>::infinity();
  BlockLanes bl;
  std::unique_ptr<double[]> xd;  // phase 1: the centred queries x' (nq x d, double)
  std::vector<std::vector<Candidate>> cand;  // per lane, in row order
  std::vector<float> T;
  std::vector<float> lbest;     // one level: a lane's smallest first-level bound so far
  std::vector<float> tile_min;  // two levels: the pilot's smallest first-level bound per tile and lane (tiles x QB)
  std::vector<float> lbest2 = std::vector<float>(QB), lmin2 = std::vector<float>(QB), scratch = std::vector<float>(QB);
  std::vector<float> tile_lo = std::vector<float>(QB);  // the rows layout's smallest bound of a tile per lane
  std::vector<uint32_t> rowbits, larg2 = std::vector<uint32_t>(QB),
      refine_bits = std::vector<uint32_t>(kPruneTile);
  std::vector<double> best;
  std::vector<uint32_t> best_row;  // the row of best[q] (kNoRow before any)
  static constexpr uint32_t kNoRow = std::numeric_limits<uint32_t>::max();
  std::vector<char> active;
  size_t live = 0;
};

// The whole request: phase 1 for every block, the cap on exact pairs, phase 2. The cap is
// max(32, N/64) rows when the queries over it fill blocks of the fused pass; when only a few
// queries would go there (each then pays for a mostly empty block), it rises in proportion,
// up to N/4.
template <class K>
void pruned_pass_t(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req, size_t begin, size_t end,
                   StateSink& sink, std::vector<char>& finished, PruneStats* stats, bool inline_ok) {
  const KernelTable& kt = kernels();
  const size_t QB = kt.qblock, nqb = (req.B + QB - 1) / QB, rows_in = end - begin;
  std::vector<std::unique_ptr<PrunedBlock<K>>> blocks(nqb);
  for (size_t bi = 0; bi < nqb; ++bi) {
    const size_t q0 = bi * QB;
    blocks[bi] = std::make_unique<PrunedBlock<K>>(ref, px, req, kt, begin, end, q0, std::min(QB, req.B - q0));
  }
  const double base_cap = static_cast<double>(std::max<size_t>(kMinCandidates, rows_in / kDenseRatio));
  ThreadPool& pool = ThreadPool::global();
  const double max_cap = std::max(base_cap, static_cast<double>(rows_in) / 4.0);
  // Phase 1 for every block; a block none of whose lanes is over the base cap finishes at once
  // (the cap chosen below is never smaller, so it cannot change that block's outcome), which
  // saves the pool a second hand-off when every block is sparse.
  finished.assign(req.B, 0);
  std::vector<size_t> over(nqb, 0);
  std::vector<char> done(nqb, 0);
  const auto phase1 = [&](size_t bi, ProbeReport* report_to) {
    PrunedBlock<K>& b = *blocks[bi];
    b.bounds(base_cap, report_to);
    const size_t nq = std::min(QB, req.B - bi * QB);
    for (size_t q = 0; q < nq; ++q) {
      const float n = b.count(q);
      over[bi] += (n < 0 || n > base_cap) ? 1 : 0;
    }
    if (over[bi] == 0) {
      b.finish(static_cast<float>(base_cap), sink, finished);
      done[bi] = 1;
    }
  };
  // The probe: the pool claims blocks in order, so blocks 0 .. probe-1 are running or done
  // when a later block starts. It waits (in the same hand-off to the pool: a second one cost
  // training digits at sigma 0.05 about 0.1 ms, 10% of their call) until a probe block reports
  // a query left after its first tile (then every block is attempted; a probe reports within
  // its first tile, so the wait is short) or every probe block has reported none.
  const size_t probe = req.sigma.uniform() && req.alpha.uniform() && nqb > kProbeBlocks ? kProbeBlocks : nqb;
  Probe verdict(probe);
  std::vector<char> skipped(nqb, 0);
  pool.parallel_for(nqb, [&](size_t bi) {
    if (bi < probe) {
      ProbeReport report(verdict);
      phase1(bi, &report);
    } else if (verdict.attempt()) {
      phase1(bi, nullptr);
    } else {  // not attempted: every query to the full pass
      over[bi] = std::min(QB, req.B - bi * QB);
      done[bi] = 1;
      skipped[bi] = 1;
    }
  }, inline_ok);
  size_t to_full = 0;
  std::vector<size_t> rest;
  for (size_t bi = 0; bi < nqb; ++bi) {
    to_full += over[bi];
    if (!done[bi]) rest.push_back(bi);
  }
  double cap = base_cap;
  if (to_full > 0 && to_full < QB) cap = std::min(base_cap * static_cast<double>(QB) / static_cast<double>(to_full), max_cap);
  if (!rest.empty())
    pool.parallel_for(rest.size(), [&](size_t i) { blocks[rest[i]]->finish(static_cast<float>(cap), sink, finished); }, inline_ok);
  if (stats) {
    for (const auto& b : blocks) {
      stats->exact_pairs += b->stats.exact_pairs;
      stats->sparse_queries += b->stats.sparse_queries;
      stats->decide_ns += b->stats.decide_ns;
      stats->wide_tiles += b->stats.wide_tiles;
    }
    for (char k : skipped) stats->skipped_blocks += k ? 1 : 0;
  }
}

}  // namespace

size_t pruned_scratch_bytes(const PruneIndex& px, size_t B, size_t /*n: the bound does not depend on it*/, size_t d,
                            bool weighted_sum) {
  const size_t QB = kernels().qblock, nqb = (B + QB - 1) / QB;
  // per block: a tile's bounds and the lanes' operands; per query at most kMaxCandidates
  // candidates after a tile's check plus one tile's worth, (row, bound) pairs, twice over for
  // the vectors' growth
  // (a tile of bounds, and in the rows layout one column per lane; the lanes' operands: the
  // first level's, the full b^ per lane and, for wide tiles, again in the lanes layout)
  const size_t per_block = (2 * kPruneTile + 12) * QB * sizeof(float) + kPruneTile * sizeof(uint32_t) + (3 * px.kp + 5) * QB * sizeof(float);
  const size_t candidates = B * (kMaxCandidates + kPruneTile) * 2 * (sizeof(uint32_t) + sizeof(float));
  const size_t states = B * (4 + (weighted_sum ? d : 0)) * sizeof(double) * 2;  // a state's rows, twice over
  return nqb * per_block + candidates + states + B * d * sizeof(double);
}

void pruned_pass(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req, size_t begin, size_t end,
                 StateSink& sink, std::vector<char>& finished, PruneStats* stats, bool inline_ok) {
  visit_kernel(req.kernel.kind,
               [&](auto unit) { pruned_pass_t<decltype(unit)>(ref, px, req, begin, end, sink, finished, stats, inline_ok); });
}

}  // namespace sf
