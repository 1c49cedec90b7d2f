#include "targets.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "dispatch.hpp"
#include "errors.hpp"
#include "philox.hpp"
#include "rows.hpp"
#include "thread_pool.hpp"

namespace sf {
namespace {

// out = c * (q * w + p * u) for one row; see KernelTable::combine.
struct Affine {
  float c, p, q;
};

// Applies out = c_i * (q_i * w + p_i * u) row by row, where (c, p, q) = make(a_i, b_i) is
// computed in double from two per-sample coefficients.
template <class Make>
void affine_rows(float* out, const float* u, const float* w, size_t B, size_t d, Coef a, Coef b,
                 Make make, bool inline_ok) {
  const KernelTable& kt = kernels();
  const size_t n = checked_mul(B, d, "batch x dim");
  if (n == 0) return;
  if (a.uniform() && b.uniform()) {
    const Affine k = make(a.value, b.value);
    ThreadPool::global().parallel_for(
        rows::chunk_count(n),
        [&](size_t ch) {
          const size_t s = ch * kChunkElems, e = std::min(n, s + kChunkElems);
          kt.combine(out + s, u + s, w + s, e - s, k.c, k.p, k.q);
        },
        inline_ok);
    return;
  }
  ThreadPool::global().parallel_for(
      rows::chunk_count(n),
      [&](size_t ch) {
        double last_a = 0.0, last_b = 0.0;
        bool have = false;
        Affine k{0.0f, 0.0f, 0.0f};
        rows::for_pieces(ch, n, d, [&](size_t row, size_t s, size_t e) {
          const double ai = a.at(row), bi = b.at(row);
          if (!have || ai != last_a || bi != last_b) {
            k = make(ai, bi);
            last_a = ai;
            last_b = bi;
            have = true;
          }
          kt.combine(out + s, u + s, w + s, e - s, k.c, k.p, k.q);
        });
      },
      inline_ok);
}

Affine affine(double c, double p, double q) {
  return {static_cast<float>(c), static_cast<float>(p), static_cast<float>(q)};
}

// A conversion target written as out = A * model + Bx * x, rearranged so that the larger
// of the two products is fused: out = Bx * (x + (A/Bx) * model) when Bx != 0.
struct Linear {
  double A, Bx;
};

Linear x0_from(Param from, double al, double sg) {
  const double S = al * al + sg * sg;
  switch (from) {
    case Param::Eps: return {-sg / al, 1.0 / al};
    case Param::X0: return {1.0, 0.0};
    case Param::V: return {-sg / S, al / S};
    case Param::Score: return {sg * sg / al, 1.0 / al};
  }
  return {0.0, 0.0};
}

Linear eps_from(Param from, double al, double sg) {
  const double S = al * al + sg * sg;
  switch (from) {
    case Param::Eps: return {1.0, 0.0};
    case Param::X0: return {-al / sg, 1.0 / sg};
    case Param::V: return {al / S, sg / S};
    case Param::Score: return {-sg, 0.0};
  }
  return {0.0, 0.0};
}

Linear linear_for(Param from, Param to, double al, double sg) {
  switch (to) {
    case Param::X0: return x0_from(from, al, sg);
    case Param::Eps: return eps_from(from, al, sg);
    case Param::Score: {
      const Linear e = eps_from(from, al, sg);
      return {-e.A / sg, -e.Bx / sg};
    }
    case Param::V: {  // v = alpha * eps - sigma * x0
      const Linear e = eps_from(from, al, sg), x = x0_from(from, al, sg);
      return {al * e.A - sg * x.A, al * e.Bx - sg * x.Bx};
    }
  }
  return {0.0, 0.0};
}

}  // namespace

void perturb(float* out, const float* x0, const float* eps, size_t B, size_t d, Coef alpha,
             Coef sigma, bool inline_ok) {
  affine_rows(out, x0, eps, B, d, alpha, sigma,
              [](double al, double sg) { return affine(1.0, al, sg); }, inline_ok);
}

void conditional_score(float* out, const float* x, const float* x0, size_t B, size_t d,
                       Coef alpha, Coef sigma, bool inline_ok) {
  affine_rows(out, x, x0, B, d, alpha, sigma,
              [](double al, double sg) { return affine(-1.0 / (sg * sg), 1.0, -al); }, inline_ok);
}

void velocity_target(float* out, const float* x0, const float* eps, size_t B, size_t d,
                     Coef dalpha, Coef dsigma, bool inline_ok) {
  affine_rows(out, x0, eps, B, d, dalpha, dsigma,
              [](double da, double ds) { return affine(1.0, da, ds); }, inline_ok);
}

void convert(Param from, Param to, float* out, const float* model, const float* x, size_t B,
             size_t d, Coef alpha, Coef sigma, bool inline_ok) {
  if (from == to) {
    const size_t n = checked_mul(B, d, "batch x dim");
    if (out != model && n) std::memmove(out, model, n * sizeof(float));
    return;
  }
  affine_rows(out, x, model, B, d, alpha, sigma,
              [from, to](double al, double sg) {
                const Linear l = linear_for(from, to, al, sg);
                if (l.Bx != 0.0) return affine(l.Bx, 1.0, l.A / l.Bx);
                return affine(l.A, 0.0, 1.0);  // out = A * model
              },
              inline_ok);
}

double dsm_loss(const float* pred, const float* target, size_t B, size_t d, Coef weight,
                float* grad, bool inline_ok) {
  const KernelTable& kt = kernels();
  const size_t n = checked_mul(B, d, "batch x dim");
  if (n == 0) return 0.0;
  const size_t chunks = rows::chunk_count(n);
  std::vector<double> partial(chunks, 0.0);
  const double inv_b = 1.0 / static_cast<double>(B);
  ThreadPool::global().parallel_for(
      chunks,
      [&](size_t ch) {
        double acc = 0.0;
        rows::for_pieces(ch, n, d, [&](size_t row, size_t s, size_t e) {
          const double w = weight.at(row);
          const float gscale = static_cast<float>(2.0 * w * inv_b);
          acc += w * kt.sqdiff(pred + s, target + s, e - s, gscale, grad ? grad + s : nullptr);
        });
        partial[ch] = acc;
      },
      inline_ok);
  double total = 0.0;
  for (double p : partial) total += p;  // fixed order
  return total * inv_b;
}

void randn(float* out, size_t B, size_t d, uint64_t seed, uint32_t stream, uint64_t offset,
           bool inline_ok) {
  const size_t n = checked_mul(B, d, "batch x dim");
  if (n == 0) return;
  if (offset + B < offset) {
    throw Error(code::kOverflow, "Expected offset + batch below 2^64 for randn but received more");
  }
  ThreadPool::global().parallel_for(
      rows::chunk_count(n),
      [&](size_t ch) {
        rows::for_pieces(ch, n, d, [&](size_t row, size_t s, size_t e) {
          const uint64_t sample = offset + row;
          size_t k = s - row * d;
          double z[2];
          if (k & 1) {
            philox_normal_pair(seed, stream, sample, static_cast<uint32_t>(k >> 1), &z[0], &z[1]);
            out[s++] = static_cast<float>(z[1]);
            ++k;
          }
          for (; s + 1 < e; s += 2, k += 2) {
            philox_normal_pair(seed, stream, sample, static_cast<uint32_t>(k >> 1), &z[0], &z[1]);
            out[s] = static_cast<float>(z[0]);
            out[s + 1] = static_cast<float>(z[1]);
          }
          if (s < e) {
            philox_normal_pair(seed, stream, sample, static_cast<uint32_t>(k >> 1), &z[0], &z[1]);
            out[s] = static_cast<float>(z[0]);
          }
        });
      },
      inline_ok);
}

void stream_triad(float* a, const float* b, const float* c, float s, size_t n, bool inline_ok) {
  ThreadPool::global().parallel_for(
      rows::chunk_count(n),
      [&](size_t ch) {
        const size_t lo = ch * kChunkElems, hi = std::min(n, lo + kChunkElems);
        for (size_t i = lo; i < hi; ++i) a[i] = b[i] + s * c[i];
      },
      inline_ok);
}

double probe_fma_peak(size_t iters, bool inline_ok) {
  ThreadPool& pool = ThreadPool::global();
  const KernelTable& kt = kernels();
  std::vector<float> sink(pool.threads());
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(pool.threads(), [&](size_t i) { sink[i] = kt.fma_loop(iters); }, inline_ok);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double probe_exp_rate(size_t n, size_t reps, bool inline_ok) {
  ThreadPool& pool = ThreadPool::global();
  const KernelTable& kt = kernels();
  const size_t T = pool.threads();
  std::vector<float> buf(T * n, -1.0f);
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(T, [&](size_t i) {
    float* v = buf.data() + i * n;
    for (size_t r = 0; r < reps; ++r) kt.exp_inplace(v, n);  // values settle at the clamp; cost is the same
  }, inline_ok);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sf
