// Memory for the private copies of asynchronous calls (binding.hpp, Task::Stage).
//
// A copy is written once and read once, so its cost is the memory traffic plus, for a fresh
// allocation, one page fault per 4 KiB page; on a virtual machine those faults dominated
// (a 64 MiB perturbAsync spent 0.5 s faulting in its three copies). Large blocks are therefore
// mapped in 2 MiB units with transparent huge pages requested, and returned blocks are kept
// (up to kStagingCacheBytes in all) to be reused by later calls without any fault.
#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include "binding.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace sfb {
namespace {

constexpr size_t kLarge = size_t{1} << 20;
constexpr size_t kUnit = size_t{2} << 20;
// Blocks above this are unmapped when returned: a cache of huge blocks would hold address
// space that the next allocation (ours or V8's) may need under a tight memory limit.
constexpr size_t kMaxCachedBlock = size_t{64} << 20;

struct Block {
  void* p;
  size_t bytes;
};

std::mutex& cache_mutex() {
  static std::mutex* m = new std::mutex();  // never destroyed: used until the process ends
  return *m;
}
std::vector<Block>& cache() {
  static std::vector<Block>* c = new std::vector<Block>();
  return *c;
}
size_t& cached_bytes() {
  static size_t total = 0;
  return total;
}

void* map_block(size_t bytes) {
#if defined(__linux__)
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
#else
  void* p = std::malloc(bytes);
  if (!p) throw std::bad_alloc();
  return p;
#endif
}

void unmap_block(void* p, size_t bytes) {
#if defined(__linux__)
  munmap(p, bytes);
#else
  (void)bytes;
  std::free(p);
#endif
}

}  // namespace

void* stage_alloc(size_t bytes, size_t* block_bytes) {
  if (bytes < kLarge) {
    *block_bytes = 0;
    void* p = std::malloc(std::max<size_t>(bytes, 1));
    if (!p) throw std::bad_alloc();
    return p;
  }
  const size_t want = (bytes + kUnit - 1) / kUnit * kUnit;
  {
    std::lock_guard<std::mutex> g(cache_mutex());
    std::vector<Block>& c = cache();
    // the smallest cached block that fits, if it is not more than twice the size
    size_t best = c.size();
    for (size_t i = 0; i < c.size(); ++i)
      if (c[i].bytes >= want && c[i].bytes <= 2 * want && (best == c.size() || c[i].bytes < c[best].bytes)) best = i;
    if (best != c.size()) {
      const Block b = c[best];
      c.erase(c.begin() + static_cast<std::ptrdiff_t>(best));
      cached_bytes() -= b.bytes;
      *block_bytes = b.bytes;
      return b.p;
    }
  }
  *block_bytes = want;
  try {
    return map_block(want);
  } catch (const std::bad_alloc&) {
    stage_trim();  // give the cached blocks back and try once more
    return map_block(want);
  }
}

void stage_trim() {
  std::vector<Block> blocks;
  {
    std::lock_guard<std::mutex> g(cache_mutex());
    blocks.swap(cache());
    cached_bytes() = 0;
  }
  for (const Block& b : blocks) unmap_block(b.p, b.bytes);
}

void stage_free(void* p, size_t block_bytes) {
  if (!p) return;
  if (block_bytes == 0) {
    std::free(p);
    return;
  }
  {
    std::lock_guard<std::mutex> g(cache_mutex());
    if (block_bytes <= kMaxCachedBlock && cached_bytes() + block_bytes <= kStagingCacheBytes) {
      cache().push_back({p, block_bytes});
      cached_bytes() += block_bytes;
      return;
    }
  }
  unmap_block(p, block_bytes);
}

Task::Copy::~Copy() { stage_free(data, bytes); }

}  // namespace sfb
