// Row-wise application of elementwise kernels to B x d arrays with per-sample coefficients,
// cut into fixed chunks of kChunkElems elements (results never depend on the thread count).
// Internal to the core (targets.cpp, steps.cpp).
#pragma once
#include <algorithm>
#include <cstddef>

#include "dispatch.hpp"
#include "errors.hpp"
#include "targets.hpp"
#include "thread_pool.hpp"

namespace sf {
namespace rows {

inline size_t chunk_count(size_t n) { return (n + kChunkElems - 1) / kChunkElems; }

// Visits the row pieces of chunk ch of a B x d array: fn(row, begin, end) with [begin, end)
// flat element indices inside one row.
template <class Fn>
void for_pieces(size_t ch, size_t n, size_t d, Fn&& fn) {
  size_t s = ch * kChunkElems;
  const size_t e = std::min(n, s + kChunkElems);
  size_t row = s / d;
  while (s < e) {
    const size_t row_end = std::min(e, (row + 1) * d);
    fn(row, s, row_end);
    s = row_end;
    ++row;
  }
}

// Runs piece(row, begin, end) over every row piece of a B x d array on the pool.
template <class Piece>
void each(size_t B, size_t d, Piece&& piece, bool inline_ok) {
  const size_t n = checked_mul(B, d, "batch x dim");
  if (n == 0) return;
  ThreadPool::global().parallel_for(
      chunk_count(n), [&](size_t ch) { for_pieces(ch, n, d, piece); }, inline_ok);
}

}  // namespace rows
}  // namespace sf
