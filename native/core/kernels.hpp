// The table of SIMD kernels. One table is compiled per instruction set (scalar,
// AVX2+FMA, AVX-512, NEON) from the single implementation in kernels_impl.hpp;
// dispatch.cpp picks one at run time.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sf {

// The reference set's second copy for the fused pass's GEMMs (ReferenceSet::panels()): panels
// of kPanelRows consecutive rows, interleaved by coordinate, so row j's coordinate k is at
// Yp[(j / kPanelRows) * kPanelRows * d + k * kPanelRows + j % kPanelRows]; the last panel is
// padded with zero rows. One layout for every instruction set (a micro-tile has at most
// kPanelRows references: R = 12, 6, 12, 4 for AVX-512, AVX2, NEON, scalar).
inline constexpr size_t kPanelRows = 12;

// The online softmax's lazily moved reference (KernelTable::softmax_lanes) moves only when a
// tile's maximum exceeds it by more than this.
inline constexpr float kSoftmaxSlack = 16.0f;

// Per-lane constants of the nonlinear tile form (Poisson and radial kernels), each an array
// of qblock floats (see KernelTable::nonlinear_tile and estimator.cpp).
struct NonlinearLanes {
  int kind = 1;                 // 1 Poisson, 2 radial tanh, 3 radial exp
  const float* xx = nullptr;    // ||x'||^2
  const float* a = nullptr;     // alpha
  const float* a2 = nullptr;    // alpha^2
  const float* s2 = nullptr;    // Poisson: tau^2; radial: (floor t)^2
  const float* inv_t = nullptr; // radial: 1/t
  const float* c = nullptr;     // Poisson (d + D)/2; radial d - 1
  const float* off = nullptr;   // offset subtracted from the log-weights
  // Poisson: exp(off / c), the offset as 1 / (r^2 + tau^2); radial: 1 / r2_ref, a reference
  // squared distance the log r^2 term is taken relative to
  const float* inv_qref = nullptr;
  // modelled error of r^2: eA ny + eG amax + eB yy + eC
  const float* eA = nullptr;
  const float* eG = nullptr;
  const float* eB = nullptr;
  const float* eC = nullptr;
};

// Per-lane constants of the bf16 screen's bounds (KernelTable::screen_bounds), qblock floats
// each: the tile form's coefficients, |cA| rounded up, ||bf16(x')||, ||x' - bf16(x')||, the
// float sums' error factor gamma_d (||bf16(x')|| + ||x' - bf16(x')||), and the lane's largest
// modelled float error of a log-weight in the tile.
struct ScreenLanes {
  const float *cA, *cB, *cC, *absA, *bn, *bd, *gm, *e;
};

struct KernelTable {
  const char* name;
  // out[k] = c * (q * w[k] + p * u[k]); the product q*w is fused with the sum, so
  // x - alpha*x0 style differences are rounded once. out may equal u or w.
  void (*combine)(float* out, const float* u, const float* w, size_t n, float c, float p, float q);
  // out[k] = c0 u0[k] + c1 u1[k] + c2 u2[k] + c3 u3[k] (the Heun correction); out may equal
  // any input.
  void (*combine4)(float* out, const float* u0, const float* u1, const float* u2, const float* u3, size_t n,
                   float c0, float c1, float c2, float c3);
  // Returns sum_k (a[k] - b[k])^2 accumulated in float blocks added into a double.
  // When grad is not null also writes grad[k] = gscale * (a[k] - b[k]); grad may equal a or b.
  double (*sqdiff)(const float* a, const float* b, size_t n, float gscale, float* grad);

  // ---- The estimator's fused pass (estimator.cpp). Queries are processed in blocks of
  // qblock = 2 * lanes; a tile of nt references Y (row-major, row stride d) at a time.
  size_t lanes;
  size_t qblock;
  // "Lanes" layout, queries in vector lanes: XT[k * qblock + q] holds query q's coordinate k.
  // S[j * qblock + q] = sum_k XT[k * qblock + q] * Y[j * d + k]
  void (*dot_lanes)(const float* XT, const float* Y, size_t nt, size_t d, float* S);
  // AccT[k * qblock + q] += sum_j P[j * qblock + q] * Y[j * d + k]; float within the tile,
  // added into double accumulators.
  void (*acc_lanes)(double* AccT, const float* P, const float* Y, size_t nt, size_t d);
  // The same two products over the set's row panels (kPanelRows, ReferenceSet::panels()) for
  // rows [j0, j0 + nt): bit-identical to dot_lanes / acc_lanes on those rows, faster (the
  // micro-tile's references come from one sequential stream). acc_panels also gets the tile's
  // row-major rows Y (row j0 of the set), which it reads instead when few rows carry weight.
  void (*dot_panels)(const float* XT, const float* Yp, size_t j0, size_t nt, size_t d, float* S);
  // dot_lanes for n listed rows of a tile (the bf16 screen's kept rows): S[rows[i] * qblock + q]
  // for i < n, row rows[i] at Y + rows[i] * d; bit-identical to dot_lanes on those rows.
  void (*dot_listed)(const float* XT, const float* Y, const uint32_t* rows, size_t n, size_t d, float* S);
  void (*acc_panels)(double* AccT, const float* P, const float* Y, const float* Yp, size_t j0, size_t nt, size_t d);
  // "Rows" layout for a few queries (row-major X, nq < qblock), same S and P layouts.
  void (*dot_rows)(const float* X, size_t nq, const float* Y, size_t nt, size_t d, float* S);
  // Acc[q * d + k] += sum_j P[j * qblock + q] * Y[j * d + k] for q < nq.
  void (*acc_rows)(double* Acc, size_t nq, const float* P, const float* Y, size_t nt, size_t d);
  // Gaussian log-weights from dot products, in place: L = cA[q] * S + (cB[q] * yy[j] + cC[q]);
  // with lane_max / lane_min non-null also the tile's largest / smallest L per lane.
  void (*logits_gauss)(float* S, size_t nt, const float* yy, const float* cA, const float* cB, const float* cC,
                       float* lane_max, float* lane_min);
  // Online-softmax step over a tile of log-weights L (weights written to P): M[q] is the
  // running reference (in/out; -1e30 before the first tile; within 16 of the running
  // maximum, never above it), scale[q] = exp(M_old - M_new), P = exp(L - M_new), and the
  // tile sums sums[0..qblock) = sum_j P, sums[qblock..2qb) = sum_j P^2,
  // sums[2qb..3qb) = sum_j P * yy[j]. With cA non-null, L holds dot products and the
  // Gaussian log-weights cA S + cB yy + cC are formed in the same pass. flags: bit 0 computes
  // the sum of P^2, bit 1 the sum of P * yy (left 0 otherwise).
  // A weight below e^-floor (floor <= 40) of max(M, R) is exactly 0, R[q] being the lane's
  // largest log-weight of the earlier tiles in the same frame (-1e30 when there is none);
  // on return R[q] = max(R[q], the tile's largest log-weight, M's new value).
  void (*softmax_lanes)(const float* L, float* P, size_t nt, const float* yy, float* M, float* R, float* scale,
                        float* sums, const float* cA, const float* cB, const float* cC, unsigned flags, float floor);
  // For d <= small_d: one tile of dot products, Gaussian log-weights (cA S + cB yy + cC),
  // online softmax (as softmax_lanes, same M / scale / sums / flags) and weighted sums, all in
  // registers; XT is d x qblock, Y the tile's rows (stride d); the tile's weighted sums go to
  // tacc[k * qblock + q] (float).
  void (*fused_small)(const float* XT, const float* Y, const float* yy, size_t nt, size_t d, const float* cA,
                      const float* cB, const float* cC, float* M, float* scale, float* sums, float* tacc,
                      unsigned flags, float floor);
  size_t small_d;
  // Nonlinear kernels' tile form in float: from dot products S[j * qblock + q], writes the
  // log-weights minus the lane's base into S, a bound of their error into E, and per lane
  // the largest S - E (lo) and the largest S (hi).
  void (*nonlinear_tile)(float* S, float* E, size_t nt, const float* yy, const float* ny, const float* am,
                         const NonlinearLanes& p, float* lo, float* hi);
  // Precise squared distance for recomputed pairs: sum_k (x_k - a (row_k + c_k))^2 with
  // the differences and the sum in double (row + c is exact in float).
  double (*exact_r2)(const float* x, const float* row, const float* c, size_t d, double a);

  // ---- The scans of every request (finite.hpp, compiled for this instruction set): the index
  // of the first value of v that is not finite (n when none), and ||x - alpha c||^2 in double
  // (with out, also x - alpha c into it).
  size_t (*first_nonfinite)(const float* v, size_t n);
  double (*centred_sq)(const float* x, const float* c, double alpha, size_t d, double* out);

  // ---- Exact pruning (prune.cpp).
  // out[v * k + c] = sum_i V[v * d + i] U[i * k + c] in double for nv vectors V (U row-major
  // d x k) and the columns c0 <= c < c1 (each column's sum in the same order whatever the range).
  void (*project)(const double* V, size_t nv, size_t d, const double* U, size_t k, size_t c0, size_t c1, double* out);
  // G[i * k + c] += z[i] t[c] (double, G row-major d x k).
  void (*rank1)(double* G, const double* z, size_t d, const double* t, size_t k);
  // Over a tile of bounds S[j * qblock + q]: rowbits[j] bit q where S <= T[q] (qblock <= 32),
  // counts[q] += rows with the bit; returns whether any bit was set.
  bool (*select_le)(const float* S, size_t nt, const float* T, uint32_t* rowbits, float* counts);
  // The pruned pass's second level, per pair: for each bit q of rowbits[j],
  // S[j * qblock + q] = max(S, cA[q] dot(Xr[q * kp..], A[j * kp..]) + cB[q] aa[j] + cC[q])
  // (the tighter of two lower bounds), and lane_min[q] / lane_arg[q] the smallest such S and
  // its row (updated only where smaller).
  void (*refine_bounds)(float* S, size_t nt, const uint32_t* rowbits, const float* Xr, const float* A, size_t kp,
                        const float* aa, const float* cA, const float* cB, const float* cC, float* lane_min,
                        uint32_t* lane_arg);
  // The fused pass's vectorised decision which pairs to recompute (see kernels_impl.hpp):
  // rowbits[j] bit q where e > tol and L + e >= thr[q], with
  // e = eA[q] ny[j] + eG[q] am[j] + eB[q] yy[j] + eC[q] inflated by 1e-3.
  bool (*refine_mask)(const float* S, size_t nt, const float* ny, const float* am, const float* yy, const float* eA,
                      const float* eG, const float* eB, const float* eC, const float* thr, float tol,
                      uint32_t* rowbits);

  // The pruned pass's first level in the rows layout (a few queries), vectorised over rows, for
  // nq <= 4 queries at once: query i's bounds out[i][j] = cA[i] sum_t b[i][t] At[t * stride + j]
  // + (cB[i] aa[j] + cC[i]), j < nt, against a column-major block of the index, its smallest
  // into lo[i]. Each element of At is loaded once for all of them (the block streams from
  // memory once per group, not once per query); a query's operations do not depend on the
  // group, so neither do its bits.
  void (*bounds_cols)(const float* At, size_t stride, size_t nt, size_t kp, size_t nq, const float* const* b,
                      const float* cA, const float* cB, const float* cC, const float* aa, float* const* out, float* lo);
  // rowbits[j] |= bit and S[j * stride] = s[j] where s[j] <= T (never for NaN), j < nt;
  // returns how many.
  size_t (*select_col)(const float* s, size_t nt, float T, uint32_t bit, uint32_t* rowbits, float* S, size_t stride);
  // The first level in the lanes layout, fused (one pass over the tile, the same bits as
  // dot_lanes + logits_gauss + select_le): S[j * qblock + q] = cA[q] sum_k XT[k * qblock + q]
  // A[j * kp + k] + (cB[q] aa[j] + cC[q]) and lane_min[q] its smallest over the tile; with T,
  // also rowbits[j] bit q where S <= T[q] and counts[q] += those rows (returns whether any).
  bool (*bounds_lanes)(const float* XT, const float* A, size_t nt, size_t kp, const float* aa, const float* cA,
                       const float* cB, const float* cC, const float* T, float* S, uint32_t* rowbits, float* counts,
                       float* lane_min);

  // The bf16 screen (fused_pass.cpp, docs/numerics.md "The bf16 screen"): from the bf16 dot
  // products Sb[j * qblock + q] and per row ||bf16(y)|| and ||y - bf16(y)||, each pair's tile
  // form L = cA Sb + (cB yy + cC) and a bound D of its distance from the float32 GEMM's;
  // writes negU = -(L + D + e[q]) (for select_le) and per lane the largest L - D; returns false
  // when some value is not finite (the screen then leaves the tile to the float32 GEMM).
  bool (*screen_bounds)(const float* Sb, size_t nt, const float* yy, const float* bny, const float* bdy,
                        const ScreenLanes& p, float* negU, float* lane_lo);

  // ---- The fused pass's double bookkeeping for recomputed pairs (all in double).
  // e[k] += p * y[k], k < d.
  void (*axpy_d)(double* e, double p, const float* y, size_t d);
  // e[k] *= s, k < n.
  void (*scale_d)(double* e, double s, size_t n);
  // S[j * qblock + q] = float(S + shift[q]) (the sum in double), j < nt, every lane.
  void (*shift_lanes)(float* S, size_t nt, const double* shift);
  // Per lane (all qblock), in double and in row order: s0 = sum_j P, s1 = sum_j P^2,
  // s2 = sum_j P yy[j] over P[j * qblock + q], j < nt.
  void (*lane_sums_d)(const float* P, size_t nt, const float* yy, double* s0, double* s1, double* s2);

  // ---- Benchmark probes (bench/): peak FMA throughput and exp throughput of this level.
  // fma_loop runs iters x 12 independent vector FMAs (returns a value so it is not elided).
  float (*fma_loop)(size_t iters);
  // v[i] = exp(v[i]) with the vector exp the softmax uses.
  void (*exp_inplace)(float* v, size_t n);
};

// Each returns nullptr when its instruction set was not compiled for this architecture.
const KernelTable* kernel_table_scalar();
const KernelTable* kernel_table_avx2();
const KernelTable* kernel_table_avx512();
const KernelTable* kernel_table_neon();

}  // namespace sf
