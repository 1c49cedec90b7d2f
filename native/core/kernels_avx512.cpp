// The avx512 kernel table. Build flags for this file alone enable the instruction set
// (see native/sources.json); on other architectures it compiles to a null table.
#include "kernels.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include "simd/simd_avx512.hpp"
#include "kernels_impl.hpp"
const sf::KernelTable* sf::kernel_table_avx512() { return &kTable; }
#else
const sf::KernelTable* sf::kernel_table_avx512() { return nullptr; }
#endif
