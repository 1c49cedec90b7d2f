#include "limits.hpp"

#include <atomic>
#include <cstdlib>
#include <string>

#include "errors.hpp"

namespace sf {

namespace {

// An unparsable SCOREFIELD_MEMORY_LIMIT is refused by the JavaScript loader (lib/native.ts)
// before the addon loads; here it would mean no cap.
size_t initial_limit() {
  const char* env = std::getenv("SCOREFIELD_MEMORY_LIMIT");
  size_t v = 0;
  if (env == nullptr || *env == '\0' || !parse_bytes(env, &v)) return 0;
  return v;
}

thread_local size_t t_held = 0;

std::atomic<size_t>& limit() {
  static std::atomic<size_t> value{initial_limit()};
  return value;
}

}  // namespace

size_t memory_limit() { return limit().load(std::memory_order_relaxed); }

void set_memory_limit(size_t bytes) { limit().store(bytes, std::memory_order_relaxed); }

bool parse_bytes(const char* s, size_t* out) {
  if (s == nullptr || *s < '0' || *s > '9') return false;
  unsigned long long v = 0;
  const char* p = s;
  for (; *p >= '0' && *p <= '9'; ++p) {
    if (v > (~0ull - 9) / 10) return false;
    v = v * 10 + static_cast<unsigned>(*p - '0');
  }
  std::string unit;
  for (; *p; ++p) unit += static_cast<char>((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
  static const struct {
    const char* name;
    unsigned long long mul;
  } kUnits[] = {{"", 1},           {"b", 1},           {"kb", 1000ull},     {"mb", 1000000ull},   {"gb", 1000000000ull},
                {"tb", 1000000000000ull}, {"kib", 1ull << 10}, {"mib", 1ull << 20}, {"gib", 1ull << 30}, {"tib", 1ull << 40}};
  for (const auto& u : kUnits) {
    if (unit != u.name) continue;
    if (v != 0 && u.mul > ~0ull / v) return false;
    *out = static_cast<size_t>(v * u.mul);
    return true;
  }
  return false;
}

CallMemory::CallMemory(size_t bytes) : previous_(t_held) { t_held += bytes; }
CallMemory::~CallMemory() { t_held = previous_; }

void check_memory(size_t bytes_needed, const char* what) {
  const size_t cap = memory_limit();
  const size_t bytes = bytes_needed + t_held < bytes_needed ? ~size_t{0} : bytes_needed + t_held;
  if (cap != 0 && bytes > cap) {
    throw Error(code::kLimit, "Expected at most " + std::to_string(cap) + " bytes of working memory (the memory limit) for " +
                                  what + " but it needs " + std::to_string(bytes));
  }
}

}  // namespace sf
