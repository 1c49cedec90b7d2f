// Run-time choice of the kernel table. The best instruction set the CPU (and OS)
// supports is chosen on first use; SCOREFIELD_SIMD=scalar|avx2|avx512|neon caps it, and
// set_simd_level() changes it for the whole process (tests and benchmarks).
#pragma once
#include <string>
#include <vector>

#include "kernels.hpp"

namespace sf {

// The kernel table in use now.
const KernelTable& kernels();

// Name of the level in use ("avx512", "avx2", "neon" or "scalar").
std::string simd_level();

// Levels this CPU can run, best first; always ends with "scalar".
std::vector<std::string> simd_available();

// Selects a level by name; throws sf::Error (ERR_SCOREFIELD_UNSUPPORTED) when the CPU
// cannot run it or the name is unknown.
void set_simd_level(const std::string& name);

}  // namespace sf
