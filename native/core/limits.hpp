// A process-wide cap on the working memory one call may allocate (reference sets, estimator
// scratch, sampler buffers). Calls that would need more are refused with
// ERR_SCOREFIELD_LIMIT before anything is allocated. 0 means no cap (the default, unless the
// environment variable SCOREFIELD_MEMORY_LIMIT holds a byte count at load).
#pragma once
#include <cstddef>

namespace sf {

size_t memory_limit();
void set_memory_limit(size_t bytes);
// Throws ERR_SCOREFIELD_LIMIT when bytes, plus what this thread's call already holds (see
// CallMemory), exceeds the cap.
void check_memory(size_t bytes, const char* what);

// Parses a byte count: digits with an optional unit B, kB/KB, MB, GB, TB (powers of 1000) or
// KiB, MiB, GiB, TiB (powers of 1024), case-insensitive, no space. Returns false otherwise.
bool parse_bytes(const char* s, size_t* out);

// While alive, check_memory on this thread counts `bytes` the call already holds (the private
// copies of an asynchronous call's arrays) against the cap.
class CallMemory {
 public:
  explicit CallMemory(size_t bytes);
  ~CallMemory();
  CallMemory(const CallMemory&) = delete;
  CallMemory& operator=(const CallMemory&) = delete;

 private:
  size_t previous_;
};

}  // namespace sf
