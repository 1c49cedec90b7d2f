// Errors raised by the native core. Every error carries a stable code string
// that the Node-API layer copies onto the JavaScript error it throws.
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>

namespace sf {

namespace code {
inline constexpr const char* kType = "ERR_SCOREFIELD_TYPE";
inline constexpr const char* kShape = "ERR_SCOREFIELD_SHAPE";
inline constexpr const char* kRange = "ERR_SCOREFIELD_RANGE";
inline constexpr const char* kOverflow = "ERR_SCOREFIELD_OVERFLOW";
inline constexpr const char* kUnsupported = "ERR_SCOREFIELD_UNSUPPORTED";
inline constexpr const char* kInternal = "ERR_SCOREFIELD_INTERNAL";
inline constexpr const char* kAborted = "ERR_SCOREFIELD_ABORTED";
inline constexpr const char* kFormat = "ERR_SCOREFIELD_FORMAT";
inline constexpr const char* kLimit = "ERR_SCOREFIELD_LIMIT";
}  // namespace code

class Error : public std::runtime_error {
 public:
  Error(const char* code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  const char* code() const noexcept { return code_; }

 private:
  const char* code_;
};

// A number for a message: 6 significant digits, exponent when needed (1e-20, not 0.000000).
inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// Multiplies two sizes, throwing ERR_SCOREFIELD_OVERFLOW instead of wrapping.
inline size_t checked_mul(size_t a, size_t b, const char* what) {
  if (a != 0 && b > static_cast<size_t>(-1) / a) {
    throw Error(code::kOverflow, std::string("Expected a size that fits in memory for ") + what +
                                     " but received a product that overflows");
  }
  return a * b;
}

}  // namespace sf
