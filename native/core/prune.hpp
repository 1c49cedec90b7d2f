// Exact pruning of the estimator (docs/numerics.md, "Exact pruning").
//
// At small sigma the posterior sits on a few references; almost every dot product of the full
// scan multiplies a weight that is exactly zero at float precision. The pruned pass bounds
// every pair's squared distance from below with a (k+1)-dimensional projection, cheap enough to
// evaluate for all pairs (k = 64 for d = 784: 8% of one GEMM), and computes exactly only the
// pairs whose bound leaves them within the window log(N e / tol) of the best log-weight. The
// bound: for an orthonormal U (d x k) and x' = x - alpha c, y' = y - c (c the set's centre),
//   ||x - alpha y||^2 = ||U^T (x' - alpha y')||^2 + ||P (x' - alpha y')||^2
//                    >= ||b - alpha a||^2 + (s rho_x - alpha rho_y)^2
// with b = U^T x', a = U^T y', rho the norms of the residuals P x', P y' (P = I - U U^T),
// s = sign(alpha) (the reverse triangle inequality in the orthogonal complement). With the
// augmented vectors b^ = [b, s rho_x], a^ = [a, rho_y] this is ||b^ - alpha a^||^2: one small
// GEMM. U spans the leading principal directions of the data (subspace iteration on a sample);
// any orthonormal U gives a valid bound, better directions only make it tighter.
//
// Two levels: the same bound on the first k1 = k/4 directions alone (the residual then taken
// after k1 directions) is a quarter of the GEMM and already leaves only a few rows per query
// for queries near a reference (training digits: 1 or 2 of 9,000 at sigma <= 0.05); only the
// pairs it keeps get the k-direction bound (per pair), then the exact r^2.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "estimator.hpp"

namespace sf {

struct PruneIndex {
  size_t k = 0, kp = 0;    // projected dimensions; kp = k + 1 with the residual norm
  size_t k1 = 0, kp1 = 0;  // the first level's (k1 = 0: one level)
  std::vector<double> U;   // d x k, row-major, orthonormal columns
  std::vector<float> A;    // n x kp: [U^T y'_j, rho_j]
  std::vector<float> aa;   // ||A_j||^2 in double of the float A, rounded
  std::vector<float> A1;   // n x kp1: [first k1 of U^T y'_j, rho1_j] (rho1 after k1 directions)
  std::vector<float> aa1;  // ||A1_j||^2
  // The first level's matrix (A1, or A with one level) column-major, kpf x n: column t of row
  // j at Af[t * n + j] (the rows layout, a few queries, vectorised over rows)
  std::vector<float> Af;
  size_t bytes() const {
    return sizeof(double) * U.capacity() +
           sizeof(float) * (A.capacity() + aa.capacity() + A1.capacity() + aa1.capacity() + Af.capacity());
  }
};

// Sets smaller than this, or of lower dimension, get no index (the full scan is as fast).
inline constexpr size_t kPruneMinRows = 1024;
inline constexpr size_t kPruneMinDim = 16;

// The index of the centred rows (n x d); nullptr when the set is too small to gain.
std::shared_ptr<const PruneIndex> build_prune_index(const float* rows, size_t n, size_t d, bool inline_ok);

struct PruneStats {
  uint64_t exact_pairs = 0;     // pairs computed exactly by the pruned pass
  uint64_t sparse_queries = 0;  // queries finished by the pruned pass
  uint64_t decide_ns = 0;       // thread time of the bounds and the selection
  uint64_t wide_tiles = 0;      // (query block, tile) pairs bounded with the full projection densely
  uint64_t skipped_blocks = 0;  // query blocks not attempted (their first blocks left no query in the scan)
};

// Every query of req over rows [begin, end): either finished by the pruned pass (its state
// handed to sink, finished[q] set), or left out when too many pairs survive its bound for
// pruning to gain (the caller runs the fused full pass for those queries). The sink is called
// from the pool's threads, once per finished query, never twice for one query.
void pruned_pass(const ReferenceSet& ref, const PruneIndex& px, const EstimateRequest& req, size_t begin, size_t end,
                 StateSink& sink, std::vector<char>& finished, PruneStats* stats, bool inline_ok);

// An upper bound of what pruned_pass allocates for B queries over n rows of dim d (the kept
// bounds, per-block vectors, the finished queries' states).
size_t pruned_scratch_bytes(const PruneIndex& px, size_t B, size_t n, size_t d, bool weighted_sum);

}  // namespace sf
