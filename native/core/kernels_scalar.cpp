// The scalar kernel table. Build flags for this file alone enable the instruction set
// (see native/sources.json); on other architectures it compiles to a null table.
#include "kernels.hpp"

#if 1
#include "simd/simd_scalar.hpp"
#include "kernels_impl.hpp"
const sf::KernelTable* sf::kernel_table_scalar() { return &kTable; }
#else
const sf::KernelTable* sf::kernel_table_scalar() { return nullptr; }
#endif
