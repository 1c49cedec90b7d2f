// The NumPy .npy header (format versions 1.0, 2.0 and 3.0): magic, version, header length and
// the Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)}. The parser reads
// any bytes without reading past them; what it cannot accept becomes an sf::Error with a code.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sf {

struct NpyHeader {
  int major = 0, minor = 0;
  std::string descr;            // e.g. "<f4": byte order, kind, item size
  char byte_order = '|';        // '<', '>' or '|' (not applicable)
  char kind = '?';              // 'f' float, 'i' int, 'u' unsigned, 'b' bool, ...
  size_t item_size = 0;         // bytes per element (0 when the descr is not a simple type)
  bool fortran_order = false;
  std::vector<uint64_t> shape;  // () for a scalar
  size_t data_offset = 0;       // where the array data starts
  uint64_t elements = 0;        // product of shape (checked against overflow)
  uint64_t data_bytes = 0;      // elements * item_size
};

// Parses the header at the start of `bytes` (n bytes long: the whole file, or at least its
// header). Throws sf::Error (ERR_SCOREFIELD_FORMAT for malformed headers, ERR_SCOREFIELD_OVERFLOW
// for sizes that do not fit).
NpyHeader parse_npy_header(const uint8_t* bytes, size_t n);

}  // namespace sf
