#include "limits.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#include "errors.hpp"

namespace sf {

namespace {

size_t initial_limit() {
  const char* env = std::getenv("SCOREFIELD_MEMORY_LIMIT");
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(env, &end, 10);
  return (end != nullptr && *end == '\0') ? static_cast<size_t>(v) : 0;
}

std::atomic<size_t>& limit() {
  static std::atomic<size_t> value{initial_limit()};
  return value;
}

}  // namespace

size_t memory_limit() { return limit().load(std::memory_order_relaxed); }

void set_memory_limit(size_t bytes) { limit().store(bytes, std::memory_order_relaxed); }

void check_memory(size_t bytes, const char* what) {
  const size_t cap = memory_limit();
  if (cap != 0 && bytes > cap) {
    throw Error(code::kLimit, "Expected at most " + std::to_string(cap) + " bytes of working memory (the memory limit) for " +
                                  what + " but it needs " + std::to_string(bytes));
  }
}

}  // namespace sf
