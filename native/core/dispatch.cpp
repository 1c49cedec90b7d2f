#include "dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "errors.hpp"

namespace sf {
namespace {

struct Level {
  const char* name;
  const KernelTable* (*table)();
  bool (*supported)();
};

bool cpu_has_avx512() {
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
  // libgcc/compiler-rt check OS support (XCR0) for these too.
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx2() {
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_neon() {
#if defined(__aarch64__) || defined(_M_ARM64)
  return true;  // Advanced SIMD is mandatory on AArch64.
#else
  return false;
#endif
}

bool always() { return true; }

// Best first.
const Level kLevels[] = {
    {"avx512", kernel_table_avx512, cpu_has_avx512},
    {"avx2", kernel_table_avx2, cpu_has_avx2},
    {"neon", kernel_table_neon, cpu_has_neon},
    {"scalar", kernel_table_scalar, always},
};

bool usable(const Level& l) { return l.table() != nullptr && l.supported(); }

std::atomic<const KernelTable*> g_table{nullptr};
std::once_flag g_once;

const Level* find(const std::string& name) {
  for (const Level& l : kLevels) {
    if (name == l.name) return &l;
  }
  return nullptr;
}

void init_default() {
  // The best usable level, capped by SCOREFIELD_SIMD when it names a known level.
  const char* env = std::getenv("SCOREFIELD_SIMD");
  size_t start = 0;
  if (env && *env) {
    for (size_t i = 0; i < sizeof(kLevels) / sizeof(kLevels[0]); ++i) {
      if (std::string(env) == kLevels[i].name) start = i;
    }
  }
  for (size_t i = start; i < sizeof(kLevels) / sizeof(kLevels[0]); ++i) {
    if (usable(kLevels[i])) {
      g_table.store(kLevels[i].table(), std::memory_order_release);
      return;
    }
  }
}

}  // namespace

const KernelTable& kernels() {
  const KernelTable* t = g_table.load(std::memory_order_acquire);
  if (!t) {
    std::call_once(g_once, init_default);
    t = g_table.load(std::memory_order_acquire);
  }
  return *t;
}

std::string simd_level() { return kernels().name; }

std::vector<std::string> simd_available() {
  std::vector<std::string> out;
  for (const Level& l : kLevels) {
    if (usable(l)) out.emplace_back(l.name);
  }
  return out;
}

void set_simd_level(const std::string& name) {
  kernels();  // make sure the default was chosen first, so it cannot overwrite this choice
  const Level* l = find(name);
  if (!l) {
    throw Error(code::kUnsupported,
                "Expected one of avx512, avx2, neon, scalar for simd level but received " + name);
  }
  if (!usable(*l)) {
    throw Error(code::kUnsupported, "Expected a SIMD level this CPU supports for simd level but received " +
                                        name);
  }
  g_table.store(l->table(), std::memory_order_release);
}

}  // namespace sf
