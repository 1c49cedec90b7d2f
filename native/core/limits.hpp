// A process-wide cap on the working memory one call may allocate (reference sets, estimator
// scratch, sampler buffers). Calls that would need more are refused with
// ERR_SCOREFIELD_LIMIT before anything is allocated. 0 means no cap (the default, unless the
// environment variable SCOREFIELD_MEMORY_LIMIT holds a byte count at load).
#pragma once
#include <cstddef>

namespace sf {

size_t memory_limit();
void set_memory_limit(size_t bytes);
// Throws ERR_SCOREFIELD_LIMIT when bytes exceeds the cap.
void check_memory(size_t bytes, const char* what);

}  // namespace sf
