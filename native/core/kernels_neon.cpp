// The neon kernel table. Build flags for this file alone enable the instruction set
// (see native/sources.json); on other architectures it compiles to a null table.
#include "kernels.hpp"

#if defined(__aarch64__) || defined(_M_ARM64)
#include "simd/simd_neon.hpp"
#include "kernels_impl.hpp"
const sf::KernelTable* sf::kernel_table_neon() { return &kTable; }
#else
const sf::KernelTable* sf::kernel_table_neon() { return nullptr; }
#endif
