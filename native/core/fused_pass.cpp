// The fused full pass of the estimator (estimator.hpp): per block of queries, tile by tile
// over the references, two float32 GEMMs around an online softmax, with the precision policy
// deciding which pairs to recompute exactly. One work item (FusedItem) is a query block over a
// range of tiles; its steps are the member functions below, in the order run() calls them.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "aligned.hpp"
#include "dispatch.hpp"
#include "engine.hpp"
#include "estimator_kernels.hpp"
#include "screen_bf16.hpp"
#include "thread_pool.hpp"

namespace sf {
using namespace est;
namespace {

// Tile length: a tile of references should stay in L2 between the two GEMMs. Depends only
// on d, so the reduction order never depends on the thread count.
size_t tile_rows(size_t d) {
  size_t nt = (size_t{1} << 17) / std::max<size_t>(d, 1);
  nt = std::clamp<size_t>(nt, 128, 512);
  return nt & ~size_t{3};
}

// Query blocks per work item when there are many (Plan::group).
constexpr size_t kMaxGroup = 4;

struct Plan {
  size_t qb = 0;       // queries per block
  size_t nqb = 0;      // query blocks
  size_t shards = 1;   // reference shards per query block
  size_t group = 1;    // query blocks per work item (over the same tiles, tile by tile)
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
  // Many query blocks: groups of 2 or 4 blocks share each tile pass, so the references stream
  // from memory half or a quarter as often (each block computes exactly what it would alone:
  // this one choice may depend on the thread count). As large as leaves every thread two work
  // items or more, for balance.
  if (p.shards == 1)
    while (p.group < kMaxGroup && p.nqb >= 2 * p.group * 2 * ThreadPool::global().threads()) p.group *= 2;
  return p;
}



// Scratch of one work item. The arrays the GEMMs load whole vectors from are cache-line
// aligned (aligned.hpp: 1-2.5% of the GEMMs' time, measured).
struct Scratch {
  AlignedVec<float> X;     // lanes: XT (d x qb); rows: X (nq x d)
  AlignedVec<float> S;     // nt x qb: dot products / log-weights
  AlignedVec<float> P;     // nt x qb: weights
  AlignedVec<float> tacc;  // small d: the tile's weighted sums (d x qb)
  AlignedVec<float> Ef;    // nonlinear kernels: their error bounds
  std::vector<double> nl_base;  // nonlinear kernels: what the float tile values are relative to
  std::vector<double> r2top;    // radial kernels: r^2 of the best recomputed pair so far
  std::vector<float> tlo, thi;   // nonlinear kernels: per-lane tile max of (L - E) and of L
  std::vector<float> thr;        // nonlinear kernels: per-lane candidate threshold, then shift
  std::vector<float> nl_xx, nl_a, nl_a2, nl_s2, nl_it, nl_c, nl_off, nl_iq, nl_eA, nl_eG, nl_eB, nl_eC;
  AlignedVec<double> acc;  // lanes: d x qb; rows: nq x d
  std::vector<float> M, scale, sums, cA, cB, cC;
  std::vector<float> R;      // per lane: the running maximum, in the frame of S (softmax)
  std::vector<double> rmax;  // per lane: the largest log-weight of the tiles so far (absolute)
  std::vector<double> off, s0, s1, s2, eA, eG, eB, eC, lo, x0, x1, x2;  // x*: tile temporaries
  std::vector<double> exact;      // nq x d: weighted sums of heavy recomputed pairs (lazy)
  std::vector<char> exact_used;   // per query
  std::vector<uint32_t> rowbits;  // per tile row: lanes with a possible candidate
  // the bf16 screen: the queries' lanes in bf16 pairs, the tile's bf16 dot products, the rows
  // it keeps, per lane ||bf16(x')|| and ||x' - bf16(x')|| (rounded up)
  std::vector<uint16_t> Xb;
  AlignedVec<float> Sb;
  std::vector<uint32_t> kept;
  std::vector<float> bnx, bdx;
};

// An upper bound: every kernel's vectors (S, P and the nonlinear kernels' E per tile; 23
// float and 14 double per-lane vectors; the refined-pair lists at their largest; the bf16
// screen's).
size_t scratch_bytes(size_t qb, size_t nt, size_t d, bool ws) {
  return sizeof(float) * (qb * d + 3 * nt * qb + 23 * qb + d) + sizeof(uint32_t) * nt + sizeof(double) * ((ws ? qb * d : 0) + 14 * qb) +
         (2 * sizeof(uint32_t) + sizeof(double)) * nt * qb +
         // the bf16 screen: the lanes in bf16, the tile's bf16 products, the kept rows, 2 norms per lane
         sizeof(uint16_t) * (d + 1) * qb + sizeof(float) * nt * qb + sizeof(uint32_t) * nt + 2 * sizeof(float) * qb;
}

// What the work items of one call count, summed over threads.
struct Counters {
  std::atomic<uint64_t> refined{0};    // pairs recomputed precisely
  std::atomic<uint64_t> decide_ns{0};  // time spent deciding which pairs to recompute
  std::atomic<uint64_t> screened{0}, skipped{0};  // rows the bf16 screen judged / skipped (per block)
};

// The thread's scratch, kept between items and calls: its larger vectors (d x qblock
// accumulators) would otherwise be fresh mmap'd pages, page-faulted in on every item.
// Slot i < kMaxGroup: one per query block of a group (Plan::group).
Scratch& thread_scratch(size_t slot) {
  static thread_local Scratch s[kMaxGroup];
  return s[slot];
}

// The largest row norm, coordinate and squared norm of a tile: with a lane's error
// coefficients, the largest modelled float error of its log-weights in the tile.
struct TileMaxima {
  double ny = 0, am = 0, yy = 0;
  TileMaxima(const float* ny_, const float* am_, const float* yy_, size_t nt) {
    for (size_t j = 0; j < nt; ++j) {
      ny = std::max<double>(ny, ny_[j]);
      am = std::max<double>(am, am_[j]);
      yy = std::max<double>(yy, yy_[j]);
    }
  }
  double error(double eA, double eG, double eB, double eC) const { return eA * ny + eG * am + eB * yy + eC; }
};

// One query block (queries q0 .. q0 + nq) over the references of tiles [t0, t1).
template <class K>
class FusedItem {
 public:
  FusedItem(const ReferenceSet& ref_, const EstimateRequest& req_, const Plan& plan_, size_t q0_, size_t nq_, size_t t0,
            size_t t1, size_t slot)
      : ref(ref_), req(req_), plan(plan_), kt(*plan_.kt), pol(precision_policy()), d(ref_.dim()), QB(plan_.qb),
        W(kt.lanes), q0(q0_), nq(nq_),
        // queries in vector lanes, unless there are so few that row-vectorised dot products
        // do better (measured on MNIST, AVX-512: rows win up to 8 queries, lanes from 10 of
        // the 32) - except for small d, where the fused in-register tile wins anyway
        lanes(nq_ * 8 >= W * 5 || d <= kt.small_d), c(ref_.centre()), s(thread_scratch(slot)), ny(ref_.norms()),
        yy(ref_.sqnorms()), am(ref_.maxabs()), j0(plan_.begin + t0 * plan_.nt),
        j1(std::min(plan_.end, plan_.begin + t1 * plan_.nt)),
        flags((req_.sum_squares ? 1u : 0u) | (req_.sum_yy ? 2u : 0u)),
        // Weights below e^-floor of the top are exactly 0: with floor = log(N e / tol) +
        // log(1000) (N the call's rows; at most 40), all of them together weigh less than
        // tol / (1000 e) of the top, far below the tolerance, and the second GEMM skips more
        // rows (MNIST, N = 9,000: e^-26 instead of e^-40).
        weight_floor(static_cast<float>(std::min(
            40.0, std::log(static_cast<double>(std::max<size_t>(plan_.end - plan_.begin, 1)) * std::exp(1.0) / pol.tolerance) +
                      std::log(1000.0)))),
        // small d with queries in lanes: tiles without uncertain pairs run fully in registers
        small(lanes && d <= kt.small_d && K::kFusable) {}

  // One or several query blocks over the same tiles, tile by tile: each tile is read from
  // memory once for all of them and stays in cache between the blocks (each block's arithmetic
  // is the same as alone, so results do not change).
  static void run_group(std::vector<FusedItem>& items, PartialState& st, Counters& counters) {
    for (FusedItem& it : items) it.prepare_lanes();
    const size_t nt = items[0].plan.nt;
    for (size_t jt = items[0].j0; jt < items[0].j1; jt += nt)
      for (FusedItem& it : items) it.tile(jt);
    for (FusedItem& it : items) it.finish(st, counters);
  }

 private:
  // Steps 2-8 for the tile starting at row jt.
  void tile(size_t jt) {
    const size_t nt = std::min(plan.nt, j1 - jt);
    const float* Y = ref.rows() + jt * d;
    if constexpr (K::kFusable) {
      if (small && small_tile(jt, nt, Y)) return;
    }
    // Both copies of the rows give the same bits; the panels are faster for the GEMMs, but
    // recomputed pairs read the row-major copy, so once a tile of the item has recomputed
    // pairs, the rest keep to that copy and read the references once, not twice (MNIST at
    // sigma 1, where 0.2% of the pairs are recomputed: 4% faster than panels throughout).
    use_panels = !recomputing && ref.panels() != nullptr;
    bool screened = false;
    if constexpr (K::kKind == 0) {
      if (screen && screen_wait > 0) {
        --screen_wait;
      } else if (screen) {
        screened = screen_tile(jt, nt, Y);
      }
    }
    if (!screened) dot_products(jt, nt, Y);
    const auto decide_start = std::chrono::steady_clock::now();
    fuse = false;
    any_uncertain = false;
    if constexpr (K::kLinear) {
      linear_tile_form(jt, nt);
      refine_linear(jt, nt, Y);
    } else {
      nonlinear_tile_form(jt, nt);
      refine_nonlinear(nt, Y);
    }
    my_decide_ns += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - decide_start).count());
    softmax(jt, nt);
    tile_sums(jt, nt);
    weighted_sum(jt, nt, Y);
    recomputing = recomputing || !refined_q.empty();
    recentre();
  }

  // After the last tile: the block's partial state (step 9) and the call's counters.
  void finish(PartialState& st, Counters& counters) {
    write_state(st);
    counters.refined.fetch_add(my_refined, std::memory_order_relaxed);
    counters.decide_ns.fetch_add(my_decide_ns, std::memory_order_relaxed);
    counters.screened.fetch_add(my_screened, std::memory_order_relaxed);
    counters.skipped.fetch_add(my_skipped, std::memory_order_relaxed);
    // a very large scratch (huge d) is not kept
    if (s.acc.capacity() * sizeof(double) + s.X.capacity() * sizeof(float) > (size_t{16} << 20)) s = Scratch();
  }

  // Step 1. The scratch, the queries' lanes (x - alpha centre, transposed into vector lanes),
  // their offsets, and the largest row norms of the range (is any pair uncertain at all?).
  void prepare_lanes() {
    for (auto* v : {&s.S, &s.P, &s.Ef, &s.tacc}) v->clear();
    s.exact.clear();
    s.X.assign(lanes ? d * QB : nq * d, 0.0f);
    if (!(d <= kt.small_d && K::kFusable)) {  // the small-d path allocates these only if a tile needs the general path
      s.S.assign(plan.nt * QB, 0.0f);
      s.P.assign(plan.nt * QB, 0.0f);
    }
    if (req.weighted_sum) s.acc.assign(d * (lanes ? QB : nq), 0.0);
    s.M.assign(QB, kEmpty);
    s.R.assign(QB, kEmpty);
    s.rmax.assign(QB, -std::numeric_limits<double>::infinity());
    s.scale.assign(QB, 1.0f);
    s.sums.assign(3 * QB, 0.0f);
    for (auto* v : {&s.cA, &s.cB, &s.cC, &s.tlo, &s.thi, &s.thr, &s.nl_xx, &s.nl_a, &s.nl_a2, &s.nl_s2, &s.nl_it, &s.nl_c,
                    &s.nl_off, &s.nl_iq, &s.nl_eA, &s.nl_eG, &s.nl_eB, &s.nl_eC})
      v->assign(QB, 0.0f);
    for (auto* v : {&s.off, &s.s0, &s.s1, &s.s2, &s.eA, &s.eG, &s.eB, &s.eC, &s.lo, &s.x0, &s.x1, &s.x2, &s.nl_base, &s.r2top})
      v->assign(QB, 0.0);
    s.exact_used.assign(QB, 0);
    if (small) s.tacc.assign(d * QB, 0.0f);
    lane.assign(QB, Lane());
    std::vector<float> xrow(d);
    for (size_t q = 0; q < nq; ++q) {
      lane[q] = make_lane(req, q0 + q, c, d, lanes ? xrow.data() : s.X.data() + q * d);
      if (lanes)
        for (size_t k = 0; k < d; ++k) s.X[k * QB + q] = xrow[k];
      if constexpr (K::kLinear) s.off[q] = K::initial_offset(lane[q]);
    }
    // Is any pair's approximate log-weight possibly worse than the tolerance? If not, the
    // refinement pass is skipped for the whole item.
    for (size_t j = j0; j < j1; ++j) {
      max_norm = std::max<double>(max_norm, ny[j]);
      max_abs = std::max<double>(max_abs, am[j]);
    }
    lane_refined.assign(QB, 0);
    // Where the float GEMM's sum of a tile's heavy recomputed pairs could cost the score
    // digits: its error in the mean, at most nt u max ||y - c||, against tol / 8 of the
    // score's scale times sigma^2, |alpha| sigma sqrt(d) (the distance of a query noised at
    // sigma from alpha m). Gaussian kernel only; the others always sum them in double.
    heavy_double.assign(QB, 1);
    if constexpr (K::kKind == 0) {
      const double err = static_cast<double>(plan.nt) * kU * max_norm;
      for (size_t q = 0; q < nq; ++q)
        heavy_double[q] = err > 0.125 * pol.tolerance * std::fabs(lane[q].alpha) * lane[q].sigma *
                                    std::sqrt(static_cast<double>(d));
    }
    prepare_screen();
  }

  // Step 1'. The bf16 screen (docs/numerics.md, "The bf16 screen"), for the Gaussian kernel with
  // queries in lanes of 32 where the set has its bf16 copy: the lanes rounded to bf16 pairs
  // (from the float lanes the GEMM multiplies) and per lane ||bf16(x')|| and ||x' - bf16(x')||.
  void prepare_screen() {
    screen = false;
    if constexpr (K::kKind == 0) {
      dot_bf16 = dot_bf16_kernel();
      if (!dot_bf16 || !screening() || !lanes || small || QB != 32 || !ref.bf16_panels() || nq == 0) return;
      const size_t dp = ref.bf16_dim();
      s.Xb.assign(dp * QB, 0);
      // pair t of lane q as one 32-bit word (coordinate 2t in its low half), over all 32 lanes
      // (padded ones are 0)
      uint32_t* xb = reinterpret_cast<uint32_t*>(s.Xb.data());
      double nb[32] = {}, ne[32] = {};
      for (size_t t = 0; t < dp / 2; ++t) {
        const float* x0 = s.X.data() + 2 * t * QB;
        const float* x1 = 2 * t + 1 < d ? x0 + QB : nullptr;
        for (size_t q = 0; q < 32; ++q) {
          const uint16_t b0 = to_bf16_acc(x0[q], nb[q], ne[q]), b1 = to_bf16_acc(x1 ? x1[q] : 0.0f, nb[q], ne[q]);
          xb[t * 32 + q] = static_cast<uint32_t>(b0) | (static_cast<uint32_t>(b1) << 16);
        }
      }
      s.bnx.resize(QB);
      s.bdx.resize(QB);
      for (size_t q = 0; q < QB; ++q) {
        s.bnx[q] = norm_up(nb[q]);
        s.bdx[q] = norm_up(ne[q]);
      }
      s.Sb.resize(plan.nt * QB);
      s.kept.resize(plan.nt);
      screen = true;
    }
  }

  // Step 3'. The screen of one tile: the bf16 dot products Sb of every pair and a bound D of
  // each pair's log-weight's distance from the one the float32 GEMM would give; a row whose
  // bound lies, for every query of the block, below both the weight floor under the least the
  // softmax's new reference can be and the precision policy's window under the least its
  // candidate threshold can be, has weight exactly 0 and no recomputed pair either way: its
  // float32 dot products are not computed and its S holds Sb (which passes the same tests).
  // Returns false when the tile keeps more than half its rows: the float32 GEMM then runs over
  // the whole tile, and the screen pauses for 2, 4, 8, ... tiles, or stops for the rest of the
  // item when the tile kept more than 7/8 of its rows.
  bool screen_tile(size_t jt, size_t nt, const float* Y) {
    const auto t0 = std::chrono::steady_clock::now();
    float* Sb = s.Sb.data();
    dot_bf16(s.Xb.data(), ref.bf16_panels(), jt, nt, ref.bf16_dim(), Sb);
    const TileMaxima tm(ny + jt, am + jt, yy + jt, nt);
    // |S_float - Sb|: the bf16 roundings plus both GEMMs' float sums, each at most gamma_d
    // times the sum of |products|, <= gamma_d (||x'|| ||y'||), with ||x'|| <= bn + bd
    const double gamma = 1.01 * static_cast<double>(d + 2) * kU;
    alignas(64) float lane_lo[32], lane_e[32], absA[32], gm[32], thr[32];
    for (size_t q = 0; q < QB; ++q) {
      if (q < nq) {
        K::coefs(lane[q], s.off[q], &s.cA[q], &s.cB[q], &s.cC[q]);
        K::error_coefs(lane[q], d, s.off[q], &s.eA[q], &s.eG[q], &s.eB[q], &s.eC[q]);
        lane_e[q] = static_cast<float>(tm.error(s.eA[q], s.eG[q], s.eB[q], s.eC[q]) * (1 + 1e-6));
        absA[q] = std::fabs(s.cA[q]) * (1 + 1e-5f);
        gm[q] = static_cast<float>(2 * gamma * (static_cast<double>(s.bnx[q]) + s.bdx[q]));
      } else {
        s.cA[q] = s.cB[q] = s.cC[q] = 0.0f;
        lane_e[q] = absA[q] = gm[q] = 0.0f;
      }
    }
    float* negU = s.P.data();  // -(the pair's largest possible log-weight, with the lane's float error)
    const ScreenLanes lanes_c{s.cA.data(), s.cB.data(), s.cC.data(), absA, s.bnx.data(), s.bdx.data(), gm, lane_e};
    if (!kt.screen_bounds(Sb, nt, yy + jt, ref.bf16_norms() + jt, ref.bf16_errors() + jt, lanes_c, negU, lane_lo)) {
      my_decide_ns += static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
      return false;  // a bf16 product overflowed (huge coordinates): this tile in float32 alone
    }
    const double log_n_tol = std::log(static_cast<double>(ref.size()) / pol.tolerance);  // as refine_linear's
    for (size_t q = 0; q < QB; ++q) {
      if (q >= nq) {
        thr[q] = -std::numeric_limits<float>::infinity();  // -U <= -inf: never kept for a padded lane
        continue;
      }
      const float mb = lane_lo[q] - lane_e[q];  // at most the tile's largest log-weight, float or exact
      const float old = s.M[q];
      const bool unset = old <= -1e29f;
      // at most the new reference: the softmax moves it to the tile's maximum (>= mb) only when
      // that exceeds the old one by kSoftmaxSlack (a guard for the float rounding of mb)
      const float guard = 0.01f + 1e-5f * std::fabs(mb);
      const float mref = unset ? mb : (mb > old + kSoftmaxSlack + guard ? mb : old);
      // below the weight floor under the larger of the reference and the earlier tiles' maximum
      // R (softmax), and out of the precision policy's reach: it recomputes a pair only if
      // L + e >= max(M, R, tile max - e_max) - window and L + e + log e >= max(M, R, tile max -
      // e_max) - log(N / tol) (refine_linear), with e <= e_max
      const float run = running_max(q);  // kEmpty before the lane's first tile
      const bool has_run = run > kEmpty;
      const double top = std::max(unset ? static_cast<double>(mb) : std::max(old, mb), has_run ? static_cast<double>(run) : -1e30);
      const double reach = std::min(pol.window, log_n_tol + std::log(static_cast<double>(lane_e[q])));
      const float t = std::min(std::max(mref, run) - weight_floor, static_cast<float>(top - reach));
      const float slack = 0.05f + 1e-5f * (std::fabs(mref) + std::fabs(mb) + (has_run ? std::fabs(run) : 0.0f));
      thr[q] = -(t - slack);  // keep where -U <= -threshold
    }
    s.rowbits.resize(nt);
    alignas(64) float counts[32] = {};
    kt.select_le(negU, nt, thr, s.rowbits.data(), counts);
    size_t n_kept = 0;
    for (size_t j = 0; j < nt; ++j)
      if (s.rowbits[j]) s.kept[n_kept++] = static_cast<uint32_t>(j);
    my_screened += nt;
    // Worth it when at most half the rows are kept. A block's first tile judges against its own
    // maximum only (no running reference yet) and keeps more (60% at sigma 1 on MNIST, against
    // 18% later on): it does not pause the screen.
    bool first = false;
    for (size_t q = 0; q < nq; ++q) first |= s.M[q] <= -1e29f;
    const bool use = n_kept * 2 <= nt;
    if (use) {
      std::copy(Sb, Sb + nt * QB, s.S.data());
      kt.dot_listed(s.X.data(), Y, s.kept.data(), n_kept, d, s.S.data());
      my_skipped += nt - n_kept;
    } else if (n_kept * 8 > nt * 7) {
      screen = false;  // nearly every row has weight (sigma 2 and up on MNIST)
    } else if (!first) {
      screen_wait = screen_backoff;  // try again after 2, 4, 8, ... tiles
      screen_backoff *= 2;
    }
    my_decide_ns += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    return use;
  }

  // Step 2 (small d). The whole tile in registers when no pair is uncertain; returns false
  // when the tile needs the general path.
  bool small_tile(size_t jt, size_t nt, const float* Y) {
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
                     s.scale.data(), s.sums.data(), s.tacc.data(), flags, weight_floor);
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
      return true;
    }
    if (s.S.empty()) {
      s.S.assign(plan.nt * QB, 0.0f);
      s.P.assign(plan.nt * QB, 0.0f);
    }
    return false;
  }

  // Step 3. Dot products of the tile (first GEMM; queries in lanes read the row panels).
  void dot_products(size_t jt, size_t nt, const float* Y) {
    if (lanes && use_panels) {
      kt.dot_panels(s.X.data(), ref.panels(), jt, nt, d, s.S.data());
    } else if (lanes) {
      kt.dot_lanes(s.X.data(), Y, nt, d, s.S.data());
    } else {
      kt.dot_rows(s.X.data(), nq, Y, nt, d, s.S.data());
    }
  }

  // Step 4a (kernels linear in r^2). The per-lane coefficients of the float tile form, and
  // the log-weights (formed later inside the softmax when no pair is uncertain).
  void linear_tile_form(size_t jt, size_t nt) {
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

  }

  // Step 5a. Decide precision: recompute exactly the pairs that are uncertain and could be
  // within the window of the top (SIMD superset test, then the double test).
  void refine_linear(size_t jt, size_t nt, const float* Y) {
    refined_j.clear();
    refined_q.clear();
    refined_l.clear();
    if (any_uncertain) {
      // A lower bound of each query's true maximum log-weight (the tile's largest
      // approximate value minus the lane's largest error, or the running maximum), then a
      // precise recomputation of every pair that is uncertain and could be within the
      // window. The per-pair error is only evaluated for pairs that pass the cheap test
      // with the lane's largest error.
      const TileMaxima tm(ny + jt, am + jt, yy + jt, nt);
      for (size_t q = 0; q < nq; ++q) s.x0[q] = s.tlo[q];  // the tile's largest value per lane (K::tile)
      // As in the nonlinear branch below: pairs more than log(N e / tol) below the top stay
      // approximate.
      const double log_n_tol = std::log(static_cast<double>(ref.size()) / pol.tolerance);
      for (size_t q = 0; q < nq; ++q) {
        s.x1[q] = tm.error(s.eA[q], s.eG[q], s.eB[q], s.eC[q]);  // largest error
        s.lo[q] = std::max<double>(std::max(s.M[q], running_max(q)), s.x0[q] - s.x1[q]) - pol.window;  // candidate threshold
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
      move_offsets_to_refined(nt);
    }
  }

  // Step 5a'. Move each refined lane's offset to its largest log-weight (in double) before the
  // values are stored as floats relative to it: near the top they then keep their digits even
  // when the offset is huge (small sigma, first tile); the refined pairs get their exact values.
  void move_offsets_to_refined(size_t nt) {
    if (refined_q.empty()) return;
    for (size_t q = 0; q < nq; ++q) s.lo[q] = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < refined_q.size(); ++i) s.lo[refined_q[i]] = std::max(s.lo[refined_q[i]], refined_l[i]);
    double* shift = s.x1.data();  // per lane, 0 where nothing was refined (adding it changes no bit)
    for (size_t q = 0; q < QB; ++q) {
      shift[q] = 0.0;
      if (q >= nq || !lane_refined[q]) continue;
      double top = s.lo[q];
      if (s.M[q] != kEmpty) top = std::max(top, s.off[q] + s.M[q]);
      shift[q] = s.off[q] - top;
      if (s.M[q] != kEmpty) s.M[q] = static_cast<float>(s.M[q] + shift[q]);
      s.off[q] = top;
    }
    kt.shift_lanes(s.S.data(), nt, shift);  // one contiguous pass, not one strided pass per lane
    for (size_t i = 0; i < refined_q.size(); ++i) {
      s.S[refined_j[i] * QB + refined_q[i]] = static_cast<float>(refined_l[i] - s.off[refined_q[i]]);
    }
  }

  // Step 4b (nonlinear kernels). The float tile form with its per-pair error bound.
  void nonlinear_tile_form(size_t jt, size_t nt) {
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
  }

  // Step 5b. Decide precision for the nonlinear kernels, then move every lane's offset to its
  // largest log-weight.
  void refine_nonlinear(size_t nt, const float* Y) {
    refined_j.clear();
    refined_q.clear();
    refined_l.clear();
    // Per lane, in double: a lower bound of the true maximum (this tile's largest value
    // minus error, or the running maximum), the candidate threshold relative to the base,
    // and the largest value so far (the new offset).
    for (size_t q = 0; q < nq; ++q) {
      const double prev = (s.M[q] != kEmpty) ? s.off[q] + s.M[q] : -std::numeric_limits<double>::infinity();
      s.lo[q] = std::max(std::max(prev, s.rmax[q]), s.nl_base[q] + s.tlo[q]);
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
    shift_to_new_offsets(nt);
  }

  // Step 5b'. Every lane's offset moves to its largest log-weight; the float values follow,
  // the refined pairs get their exact values, padded lanes stay empty.
  void shift_to_new_offsets(size_t nt) {
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

  // Step 6. The online-softmax step: weights of the tile against the lazily moved reference,
  // flushed below e^-floor of the running maximum (which the reference lags by up to
  // kSoftmaxSlack; fewer weights to sum and rows to accumulate, the same guarantee).
  void softmax(size_t jt, size_t nt) {
    for (size_t q = 0; q < QB; ++q) s.R[q] = q < nq ? running_max(q) : kEmpty;
    if (fuse) {
      kt.softmax_lanes(s.S.data(), s.P.data(), nt, yy + jt, s.M.data(), s.R.data(), s.scale.data(), s.sums.data(),
                       s.cA.data(), s.cB.data(), s.cC.data(), flags, weight_floor);
    } else {
      kt.softmax_lanes(s.S.data(), s.P.data(), nt, yy + jt, s.M.data(), s.R.data(), s.scale.data(), s.sums.data(),
                       nullptr, nullptr, nullptr, flags, weight_floor);
    }
    for (size_t q = 0; q < nq; ++q)
      if (s.R[q] > kEmpty) s.rmax[q] = std::max(s.rmax[q], s.off[q] + static_cast<double>(s.R[q]));
  }

  // The lane's largest log-weight of the earlier tiles relative to its offset (kEmpty before
  // its first tile).
  float running_max(size_t q) const {
    return s.rmax[q] > -std::numeric_limits<double>::infinity() ? static_cast<float>(s.rmax[q] - s.off[q]) : kEmpty;
  }

  // Step 7. The running sums (sum of weights, of their squares, of weights times ||y||^2),
  // rescaled to the moved reference; lanes with recomputed pairs sum the tile in double.
  void tile_sums(size_t jt, size_t nt) {
    // Lanes with precisely recomputed pairs (small sigma: the weight sits on a few
    // references, and float sums of a few large terms would cost digits the score
    // amplifies by 1/sigma^2) take their tile sums in double; their recomputed pairs are
    // added to the weighted sum in double and removed from the GEMM.
    if (!refined_q.empty()) kt.lane_sums_d(s.P.data(), nt, yy + jt, s.x0.data(), s.x1.data(), s.x2.data());
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
        if (s.exact_used[q]) kt.scale_d(s.exact.data() + q * d, sc, d);
      }
    }
  }

  // Step 8. The weighted sum of the references (second GEMM), heavy recomputed pairs in double.
  void weighted_sum(size_t jt, size_t nt, const float* Y) {
    if (req.weighted_sum) {
      // Heavy recomputed pairs (weight >= 2^-10 of the running maximum) of the lanes where
      // float sums could cost digits (heavy_double: small sigma) go to a contiguous double
      // accumulator per query; light ones stay in the GEMM, where their float rounding is
      // proportionally negligible.
      for (size_t i = 0; i < refined_q.size(); ++i) {
        const size_t j = refined_j[i], q = refined_q[i];
        float& P = s.P[j * QB + q];
        if (P < 0x1p-10f || !heavy_double[q]) continue;
        const double p = P;
        P = 0.0f;
        if (s.exact.empty()) s.exact.assign(nq * d, 0.0);
        if (!s.exact_used[q]) s.exact_used[q] = 1;
        kt.axpy_d(s.exact.data() + q * d, p, Y + j * d, d);
      }
    }
    for (size_t i = 0; i < refined_q.size(); ++i) lane_refined[refined_q[i]] = 0;
    if (req.weighted_sum) {
      if (lanes && use_panels) {
        kt.acc_panels(s.acc.data(), s.P.data(), Y, ref.panels(), jt, nt, d);
      } else if (lanes) {
        kt.acc_lanes(s.acc.data(), s.P.data(), Y, nt, d);
      } else {
        kt.acc_rows(s.acc.data(), nq, s.P.data(), Y, nt, d);
      }
    }
  }

  void recentre() {
    // Re-centre: the running reference becomes the offset, so stored log-weights stay near
    // 0. Padded lanes get a reference too (their weights are 0 from here on).
    for (size_t q = 0; q < nq; ++q) s.off[q] += s.M[q];
    for (size_t q = 0; q < QB; ++q) s.M[q] = 0.0f;
  }

  // Step 9. The partial state of the block's queries.
  void write_state(PartialState& st) {
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
  }

  const ReferenceSet& ref;
  const EstimateRequest& req;
  const Plan& plan;
  const KernelTable& kt;
  const PrecisionPolicy pol;
  const size_t d, QB, W, q0, nq;
  const bool lanes;
  const float* c;
  Scratch& s;
  const float *ny, *yy, *am;
  const size_t j0, j1;
  const unsigned flags;
  const float weight_floor;  // weights below e^-weight_floor of the top are 0 (constructor)
  const bool small;
  std::vector<Lane> lane;
  double max_norm = 0, max_abs = 0;  // largest row norm and coordinate of the item's range
  // pairs recomputed precisely in this tile: their weights are accumulated in double
  std::vector<uint32_t> refined_j, refined_q;
  std::vector<double> refined_l;
  std::vector<char> lane_refined;
  std::vector<char> heavy_double;  // per lane: heavy recomputed pairs summed in double
  bool fuse = false, any_uncertain = false;
  // this tile's GEMMs read the row panels; an earlier tile recomputed pairs (tile())
  bool use_panels = true, recomputing = false;
  uint64_t my_refined = 0, my_decide_ns = 0, my_screened = 0, my_skipped = 0;
  // the bf16 screen runs on this item's tiles (prepare_screen), until a tile keeps most rows
  bool screen = false;
  size_t screen_wait = 0, screen_backoff = 2;  // tiles left to pause, and the next pause
  DotBf16Fn dot_bf16 = nullptr;
};

void run_plan(const ReferenceSet& ref, const EstimateRequest& req, const Plan& plan, std::vector<PartialState>& states,
              bool inline_ok, Counters& counters) {
  // A work item: a group of query blocks (Plan::group, 1 unless there are many) over one
  // reference shard's tiles (Plan::shards, 1 unless there are few blocks).
  const size_t groups = (plan.nqb + plan.group - 1) / plan.group;
  auto item = [&](size_t it) {
    const size_t g = it / plan.shards, sh = it % plan.shards;
    const size_t t0 = plan.tiles * sh / plan.shards, t1 = plan.tiles * (sh + 1) / plan.shards;
    visit_kernel(req.kernel.kind, [&](auto unit) {
      using Item = FusedItem<decltype(unit)>;
      std::vector<Item> items;
      items.reserve(plan.group);
      for (size_t qbi = g * plan.group, slot = 0; qbi < std::min(plan.nqb, (g + 1) * plan.group); ++qbi, ++slot) {
        const size_t q0 = qbi * plan.qb;
        items.emplace_back(ref, req, plan, q0, std::min(plan.qb, req.B - q0), t0, t1, slot);
      }
      Item::run_group(items, states[sh], counters);
    });
  };
  ThreadPool::global().parallel_for(groups * plan.shards, item, inline_ok);
}

}  // namespace

PartialState fused_partial(const ReferenceSet& ref, const EstimateRequest& req, size_t begin, size_t end, bool inline_ok,
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
    stats->screened_rows += counters.screened.load();
    stats->screen_skipped_rows += counters.skipped.load();
    stats->scratch_bytes = std::max(stats->scratch_bytes, estimate_scratch_bytes(ref, req.B, req.weighted_sum));
    stats->dense_pairs += static_cast<uint64_t>(req.B) * (end - begin);
  }
  return std::move(states[0]);
}

size_t fused_scratch_bytes(const ReferenceSet& ref, size_t B, bool weighted_sum) {
  if (B == 0 || ref.size() == 0) return 0;
  const Plan plan = make_plan(ref, B, 0, ref.size());
  const size_t d = ref.dim();
  const size_t per_item = scratch_bytes(plan.qb, plan.nt, d, weighted_sum);
  const size_t states = plan.shards * (B * (4 + (weighted_sum ? d : 0)) + d) * sizeof(double);
  const size_t concurrent = std::min<size_t>(plan.nqb * plan.shards, ThreadPool::global().threads());
  return states + concurrent * plan.group * per_item;
}

}  // namespace sf
