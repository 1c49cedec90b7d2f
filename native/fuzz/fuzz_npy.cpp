// libFuzzer target: the .npy header parser on arbitrary bytes. Contract: returns a header or
// throws sf::Error; never reads outside the bytes; the header's numbers are consistent.
#include <cstdint>
#include <cstdlib>

#include "errors.hpp"
#include "npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const sf::NpyHeader h = sf::parse_npy_header(data, size);
    if (h.data_offset > size) std::abort();
    uint64_t elements = 1;
    for (uint64_t s : h.shape) elements *= s;
    if (elements != h.elements || h.data_bytes != h.elements * h.item_size) std::abort();
  } catch (const sf::Error&) {
  }
  return 0;
}
