// Building the reference set: rows stored relative to an exactly subtractable centre, their
// norms, and the pruning index (prune.hpp).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "errors.hpp"
#include "finite.hpp"
#include "kernels.hpp"
#include "estimator.hpp"
#include "limits.hpp"
#include "prune.hpp"
#include "screen_bf16.hpp"
#include "thread_pool.hpp"

namespace sf {
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

std::unique_ptr<ReferenceSet> ReferenceSet::build(const float* data, size_t n, size_t d, bool inline_ok, bool panels,
                                                   bool screen_copy) {
  const size_t nd = checked_mul(n, d, "reference rows x dim");
  // rows, their panels, per-row norms and the per-chunk column sums of the centring pass
  // (+ the pruning index: n x 66 floats and the sample's d x 64 x 8 doubles at most)
  const size_t npanels = (n + kPanelRows - 1) / kPanelRows;
  const size_t panel_floats = panels ? checked_mul(checked_mul(npanels, kPanelRows, "reference rows"), d, "reference rows x dim") : 0;
  // the bf16 screen's copy: half as many bytes as the panels (d rounded up to even), and 2 floats per row
  const bool screen = screen_copy && panels && d >= kScreenMinDim && dot_bf16_kernel() != nullptr;
  const size_t bf16_dp = d + (d & 1);
  const size_t bf16_elems = screen ? npanels * kPanelRows * bf16_dp : 0;
  check_memory(checked_mul(nd + panel_floats + bf16_elems / 2 + (screen ? 2 * n + 1 : 0) + 3 * n + d + 66 * n, sizeof(float), "the reference set") + checked_mul(d, sizeof(double) * (n / rows_per_chunk(d) + 2 + 520), "the reference set"),
               "the reference set");
  if (const size_t i = first_nonfinite(data, nd); i != nd) {
    throw Error(code::kRange, "Expected finite values for data but received a non-finite value at index " + std::to_string(i));
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
  // The panels: rows interleaved by coordinate, kPanelRows at a time (kernels.hpp).
  if (panels) rs->panels_.reset(new float[panel_floats]);
  rs->panel_floats_ = panel_floats;
  const size_t ppc = std::max<size_t>(1, rpc / kPanelRows);  // panels per task
  if (panels) pool.parallel_for((npanels + ppc - 1) / ppc, [&](size_t ch) {
    for (size_t p = ch * ppc; p < std::min(npanels, (ch + 1) * ppc); ++p) {
      float* out = rs->panels_.get() + p * kPanelRows * d;
      for (size_t r = 0; r < kPanelRows; ++r) {
        if (p * kPanelRows + r < n) {
          const float* row = rs->y_.data() + (p * kPanelRows + r) * d;
          for (size_t k = 0; k < d; ++k) out[k * kPanelRows + r] = row[k];
        } else {
          for (size_t k = 0; k < d; ++k) out[k * kPanelRows + r] = 0.0f;  // the last panel's padding
        }
      }
    }
  }, inline_ok);
  if (screen) {
    // The bf16 panels: row r of panel p, coordinate pair t at p * kPanelRows * dp + 2 (t kPanelRows + r);
    // per row ||bf16(row)|| and ||row - bf16(row)|| (in double, rounded up to float).
    rs->bf16_dp_ = bf16_dp;
    rs->bf16_elems_ = bf16_elems;
    rs->bf16_.reset(new uint16_t[bf16_elems]);
    rs->bny_.assign(n, 0.0f);
    rs->bdy_.assign(n, 0.0f);
    pool.parallel_for((npanels + ppc - 1) / ppc, [&](size_t ch) {
      for (size_t p = ch * ppc; p < std::min(npanels, (ch + 1) * ppc); ++p) {
        uint16_t* out = rs->bf16_.get() + p * kPanelRows * bf16_dp;
        for (size_t r = 0; r < kPanelRows; ++r) {
          const size_t j = p * kPanelRows + r;
          double nb = 0, nd2 = 0;
          for (size_t k = 0; k < bf16_dp; ++k) {
            const float v = (j < n && k < d) ? rs->y_[j * d + k] : 0.0f;
            out[(k / 2) * 2 * kPanelRows + 2 * r + (k & 1)] = to_bf16_acc(v, nb, nd2);
          }
          if (j < n) {
            rs->bny_[j] = norm_up(nb);
            rs->bdy_[j] = norm_up(nd2);
          }
        }
      }
    }, inline_ok);
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
  return sizeof(float) * (y_.capacity() + panel_floats_ + c_.capacity() + yy_.capacity() + ny_.capacity() + am_.capacity() +
                           bny_.capacity() + bdy_.capacity()) +
         sizeof(uint16_t) * bf16_elems_ +
         sizeof(*this) + (prune_ ? prune_->bytes() : 0);
}

}  // namespace sf
