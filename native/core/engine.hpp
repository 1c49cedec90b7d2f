// Internal interfaces between the estimator's files (not part of the core's public API):
//   reference_set.cpp  building the set (exact centring, norms, the pruning index)
//   partial_state.cpp  empty, merged and finalised partial states
//   fused_pass.cpp     the fused full pass (two GEMMs around an online softmax)
//   prune.cpp          exact pruning (projection bounds, exact pairs)
//   estimator.cpp      requests: range checks, choosing pruned or fused, stable targets
#pragma once
#include <cstddef>

#include "estimator.hpp"

namespace sf {

// A state of B queries over no reference (max -inf, sums 0), origin at the set's centre.
PartialState empty_state(const ReferenceSet& ref, size_t B, bool weighted_sum);

// The fused full pass over rows [begin, end) for every query of req (counts into stats).
PartialState fused_partial(const ReferenceSet& ref, const EstimateRequest& req, size_t begin, size_t end, bool inline_ok,
                           EstimateStats* stats);

// The fused pass's working memory for B queries (per-item scratch times concurrent items,
// plus the per-shard states).
size_t fused_scratch_bytes(const ReferenceSet& ref, size_t B, bool weighted_sum);

}  // namespace sf
