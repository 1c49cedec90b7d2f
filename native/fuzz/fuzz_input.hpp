// Reading structured arguments out of a fuzzer's byte string: every read is bounded, and
// running out of bytes yields zeros, so any input maps to one well-defined call.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sffuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t byte() { return i_ < n_ ? p_[i_++] : 0; }
  uint32_t u32() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(byte()) << (8 * k);
    return v;
  }
  // Any bit pattern: NaN, infinities, denormals, huge and tiny values.
  float raw_float() {
    const uint32_t b = u32();
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  // A value that meets a documented precondition (finite, |v| in [lo, hi]), derived from raw bits.
  double positive(double lo, double hi) {
    const double v = std::fabs(static_cast<double>(raw_float()));
    if (!std::isfinite(v) || v == 0) return 1.0;
    return std::fmin(hi, std::fmax(lo, v));
  }
  std::vector<float> floats(size_t count) {
    std::vector<float> out(count);
    for (auto& v : out) v = raw_float();
    return out;
  }
  // Like floats, but every value finite (the core rejects others with a coded error, which the
  // raw form exercises; this form reaches the arithmetic).
  std::vector<float> finite_floats(size_t count, float scale) {
    std::vector<float> out(count);
    for (auto& v : out) {
      const int8_t b = static_cast<int8_t>(byte());
      const int8_t e = static_cast<int8_t>(byte());
      v = scale * static_cast<float>(b) * std::ldexp(1.0f, (e % 24) - 12);
    }
    return out;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t i_ = 0;
};

}  // namespace sffuzz
