// The self-normalized estimator (docs/math.md section 2): for B queries and a reference set of
// N points, the softmax-weighted posterior mean over the references and what follows from
// it, in one fused pass that never materialises the B x N matrix.
//
// Per tile of references: dot products by a float32 GEMM (queries in vector lanes, or
// row-vectorised for a few queries), log-weights from them, a precise recomputation of the
// pairs whose approximate log-weight is both uncertain and near the top (direct
// differences in double), an online-softmax update with rescaled accumulators, and the
// weighted sum of the references by a second GEMM.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "aligned.hpp"
#include "targets.hpp"

namespace sf {

// The reference set, built once. Rows are stored centred on `centre`, a per-coordinate
// offset chosen so that every subtraction y - centre is exact: y = row + centre holds
// bit for bit, so precise recomputations see the caller's exact data.
struct PruneIndex;

class ReferenceSet {
 public:
  // panels: also keep the rows in 12-row panels for the fused pass's GEMMs (faster, 4 N d more
  // bytes); without them the GEMMs read the row-major rows, with the same results.
  // screen: also keep the bf16 copy for the fused pass's bf16 screen where it can run (below).
  static std::unique_ptr<ReferenceSet> build(const float* data, size_t n, size_t d, bool inline_ok, bool panels = true,
                                             bool screen = true);

  size_t size() const { return n_; }
  size_t dim() const { return d_; }
  const float* rows() const { return y_.data(); }
  // The same rows in panels of kPanelRows (kernels.hpp), for the fused pass's two GEMMs;
  // nullptr for a set built without them.
  const float* panels() const { return panels_.get(); }
  const float* centre() const { return c_.data(); }
  const float* sqnorms() const { return yy_.data(); }  // ||row||^2
  const float* norms() const { return ny_.data(); }    // ||row||
  const float* maxabs() const { return am_.data(); }   // max_k |row_k|
  double max_norm() const { return max_norm_; }        // max_j ||row_j||
  const PruneIndex* prune_index() const { return prune_.get(); }  // null for small sets
  // The bf16 screen's copy (screen_bf16.hpp, docs/numerics.md "The bf16 screen"): the rows
  // rounded to bfloat16 in panels of kPanelRows, coordinate pairs interleaved, each row padded
  // to bf16_dim() (d rounded up to even) coordinates; per row ||bf16(row)|| and the norm of its
  // rounding error ||row - bf16(row)||, both rounded up. nullptr / empty unless the set was
  // built with panels and screen, d >= kScreenMinDim and the CPU can run the screen.
  const uint16_t* bf16_panels() const { return bf16_.get(); }
  size_t bf16_dim() const { return bf16_dp_; }
  const float* bf16_norms() const { return bny_.data(); }
  const float* bf16_errors() const { return bdy_.data(); }
  static constexpr size_t kScreenMinDim = 128;
  size_t bytes() const;
  // The caller's rows idx[0..n) (exact: row + centre), into out (n x dim). Throws
  // ERR_SCOREFIELD_RANGE for an index >= size().
  void gather(const uint32_t* idx, size_t n, float* out) const;

 private:
  size_t n_ = 0, d_ = 0;
  AlignedVec<float> y_;  // n x d, row-major (rows vector-aligned when d is a multiple of 16)
  std::vector<float> c_, yy_, ny_, am_;
  // ceil(n / kPanelRows) * kPanelRows * d floats; not zero-filled on allocation, so that its
  // pages are first touched by the pool's threads as they write them
  std::unique_ptr<float[]> panels_;
  size_t panel_floats_ = 0;
  std::unique_ptr<uint16_t[]> bf16_;
  size_t bf16_dp_ = 0, bf16_elems_ = 0;
  std::vector<float> bny_, bdy_;
  double max_norm_ = 0;
  std::shared_ptr<const PruneIndex> prune_;
};

// A kernel is its log-weight as a function of the squared distance r^2 = ||x - alpha y||^2,
// plus its normalising constant (see kernels in estimator.cpp).
// Gaussian: l = -r^2 / (2 sigma^2). Poisson (PFGM++ with D augmented dimensions; D = 1 is
// the gravity model): l = -((d + D)/2) log(r^2 + tau^2). Radial CDF scale families
// psi_t(r) = F(r/t): l = log F'(r/t) - (d-1) log r, with F = tanh or 1 - exp(-u), r clamped
// below at kRadialFloor * t. docs/math.md section 4.
enum class KernelKind : int { Gaussian = 0, Poisson = 1, RadialTanh = 2, RadialExp = 3 };

struct KernelSpec {
  KernelKind kind = KernelKind::Gaussian;
  double D = 1.0;  // Poisson's augmented dimensions
};

// Largest squared norm (data rows, r^2) the float32 tile arithmetic may meet, and largest
// magnitude of a log-weight term (the Gaussian's alpha x.y / sigma^2, the radial kernels'
// r / t): the latter stays far from float overflow and from the -1e30 that marks padded lanes
// (estimator.cpp). Requests beyond are refused with ERR_SCOREFIELD_RANGE (check_magnitudes).
inline constexpr double kMagnitudeLimit = 1e38;
inline constexpr double kLogWeightLimit = 1e28;

// Radial kernels: r is clamped below at this fraction of the scale t (their weights are
// singular at r = 0 when d > 1).
inline constexpr double kRadialFloor = 1e-7;

enum Output : unsigned {
  kMean = 1u << 0,
  kScore = 1u << 1,
  kLogDensity = 1u << 2,
  kEss = 1u << 3,
  kTraceCov = 1u << 4,
  kDivergence = 1u << 5,
};
inline constexpr unsigned kNeedsWeightedSum = kMean | kScore | kTraceCov | kDivergence;

struct EstimateRequest {
  const float* x = nullptr;  // B x d, caller coordinates
  size_t B = 0;
  Coef alpha{nullptr, 1.0};
  Coef sigma{nullptr, 1.0};
  KernelSpec kernel;
  bool weighted_sum = true;  // accumulate sum_j w_j y_j (needed by mean/score/traceCov/divergence)
  bool sum_squares = true;   // sum_j w_j^2 (ess)
  bool sum_yy = true;        // sum_j w_j ||y_j - origin||^2 (traceCov, divergence)
  size_t begin = 0, end = static_cast<size_t>(-1);  // reference rows [begin, end)
};

// Per-query partial state over a set of references, exact to merge (docs/math.md "partial
// states"). Coordinates are relative to `origin`:
//   max[q]   = max_j l_j (true log-weight, without the kernel's normalising constant)
//   sum[q]   = sum_j exp(l_j - max)          sumsq[q] = sum_j exp(2 (l_j - max))
//   sumyy[q] = sum_j exp(l_j - max) ||y_j - origin||^2
//   acc[q*d + k] = sum_j exp(l_j - max) (y_jk - origin_k)     (empty without weighted sums)
struct PartialState {
  size_t B = 0, d = 0;
  double count = 0;  // references covered
  std::vector<double> origin, max, sum, sumsq, sumyy, acc;
};

// One query's state (a row of a PartialState), acc pointing at its d weighted sums (nullptr
// without them).
struct QueryState {
  double max = 0, sum = 0, sumsq = 0, sumyy = 0;
  const double* acc = nullptr;
};

// Where the states of finished queries go: the rows of a PartialState, or straight into the
// outputs (estimate). put may be called from several threads at once, for different queries;
// scratch is d doubles of the caller's that put may overwrite.
class StateSink {
 public:
  virtual void put(size_t q, const QueryState& s, double* scratch) = 0;

 protected:
  ~StateSink() = default;
};

struct EstimateOutputs {
  float* mean = nullptr;
  float* score = nullptr;
  float* log_density = nullptr;
  float* ess = nullptr;
  float* trace_cov = nullptr;
  float* divergence = nullptr;
};

struct EstimateStats {
  uint64_t refined = 0;  // pairs recomputed by direct difference (fused pass)
  size_t scratch_bytes = 0;
  // Exact pruning (prune.hpp): pairs of the call, pairs the fused pass computed, pairs the
  // pruned pass computed exactly, and queries the pruned pass finished.
  uint64_t pairs = 0, dense_pairs = 0, exact_pairs = 0, sparse_queries = 0;
  // Tiles (per query block) the pruned pass bounded densely with its full projection (wide).
  uint64_t wide_tiles = 0;
  // Query blocks the pruned pass did not attempt: the request's first blocks left it no query.
  uint64_t skipped_blocks = 0;
  // Rows of query blocks (a row counted once per block of up to 32 queries) whose float32 dot
  // products the fused pass's bf16 screen skipped, and rows it screened.
  uint64_t screened_rows = 0, screen_skipped_rows = 0;
  // Thread time spent deciding which pairs to compute precisely (fused pass) or at all (the
  // pruned pass's bounds), summed over threads.
  uint64_t decide_ns = 0;
};

// Partial state of every query over references [begin, end). Sums a request turned off
// (sum_squares, sum_yy) are left 0.
PartialState estimate_partial(const ReferenceSet& ref, const EstimateRequest& req, bool inline_ok,
                              EstimateStats* stats = nullptr);

// Merges `other` into `into` (re-centring it onto into's origin). Shapes must agree.
void merge_partial(PartialState& into, const PartialState& other);

// One query's outputs from its state (row q of out; m: d doubles of scratch; log_n the log of
// the references covered, for logDensity's -log N), and the check that every output of a batch
// is finite (a coded error otherwise).
void finalize_query(const QueryState& s, const double* origin, size_t d, const float* xq, double al, double sg,
                    KernelSpec kernel, double log_n, const EstimateOutputs& out, size_t q, double* m);
QueryState state_row(const PartialState& st, size_t q);
void check_outputs(const EstimateOutputs& out, size_t B, size_t d, Coef sigma);
// f(i, scratch) for every i < n, in fixed groups of queries on the pool (each query's results
// depend on it alone, so the grouping never shows); scratch: d doubles per group.
void for_query_groups(size_t n, size_t d, bool inline_ok, const std::function<void(size_t, double*)>& f);
// Turns a (merged) state into outputs: finalize_query for every query, on the pool like every
// other step (inline_ok as in ThreadPool::parallel_for), then check_outputs.
void finalize_partial(const PartialState& st, const float* x, Coef alpha, Coef sigma, KernelSpec kernel,
                      EstimateOutputs out, bool inline_ok = true);

// estimate_partial over the whole set (split into shards when B is small) + finalize; the
// queries the pruned pass finishes go straight to their outputs, without a B x d state.
void estimate(const ReferenceSet& ref, const EstimateRequest& req, EstimateOutputs out, bool inline_ok,
              EstimateStats* stats = nullptr);

// Stable target field (docs/math.md section 2): for each training pair (x0_i, x_i), the score at
// x_i estimated over the reference set plus x0_i itself. Writes B x d scores.
void stable_targets(const ReferenceSet& ref, const float* x0, const EstimateRequest& req, float* score,
                    bool inline_ok);

// Extra memory one estimate call allocates (accumulators, tiles, partial states).
size_t estimate_scratch_bytes(const ReferenceSet& ref, size_t B, bool weighted_sum);

// Tunables of the precision policy (see estimator.cpp); exposed for tests and benchmarks.
struct PrecisionPolicy {
  double window = 30.0;      // cap of the recomputation window below the max (it is log(N e / tolerance))
  double tolerance = 1e-4;   // largest accepted (modelled) error of an approximate log-weight
  double gamma_scale = 2.0;  // dot-product error model, see GaussianKernel::error_coefs
};
PrecisionPolicy& precision_policy();

// Exact pruning (prune.hpp) where the set has an index: on by default; read by every call,
// switched by setPruning from any thread.
void set_pruning(bool on);
bool pruning();

// The fused pass's bf16 screen (docs/numerics.md, "The bf16 screen") where the set and CPU
// have it: on by default; it never changes a result bit, only which float32 dot products are
// computed. Read by every call, switched by setScreening from any thread.
void set_screening(bool on);
bool screening();

}  // namespace sf
