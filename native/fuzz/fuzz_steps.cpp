// libFuzzer target: the ODE/SDE step kernels and the noise generator with arbitrary shapes and
// values (any bit patterns: the step kernels do not scan for NaN, they must simply not crash)
// and per-sample or shared levels. Contract: no memory error or undefined behaviour.
#include <cstdint>
#include <vector>

#include "errors.hpp"
#include "fuzz_input.hpp"
#include "steps.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sffuzz::Input in(data, size);
  const size_t B = in.byte() % 20;
  const size_t d = 1 + in.byte() % 70;
  const uint8_t mode = in.byte();
  const size_t n = B * d;
  std::vector<float> s(B), t(B);
  for (size_t i = 0; i < B; ++i) {
    s[i] = static_cast<float>(in.positive(1e-6, 1e6));
    t[i] = static_cast<float>(in.positive(1e-6, 1e6));
  }
  const std::vector<float> x = in.floats(n), D = in.floats(n), xp = in.floats(n), Dp = in.floats(n);
  std::vector<float> out(n + 1, 0.0f);
  const float guard = 12345.0f;
  out[n] = guard;
  sf::Coef cs, ct;
  if (mode & 1) {
    cs.per = s.data();
    ct.per = t.data();
  } else {
    cs.value = B ? s[0] : 1.0;
    ct.value = B ? t[0] : 0.5;
  }
  sf::NoiseSpec z;
  z.seed = in.u32();
  z.stream = in.u32();
  z.offset = in.u32();
  try {
    switch ((mode >> 1) % 6) {
      case 0: sf::euler_step(out.data(), x.data(), D.data(), B, d, cs, ct, true); break;
      case 1: sf::heun_correct(out.data(), x.data(), D.data(), xp.data(), Dp.data(), B, d, cs, ct, true); break;
      case 2: sf::euler_maruyama_step(out.data(), x.data(), D.data(), B, d, cs, ct, z, true); break;
      case 3: sf::langevin_step(out.data(), x.data(), D.data(), B, d, cs, ct, z, true); break;
      case 4: sf::churn_step(out.data(), x.data(), B, d, cs, ct, in.positive(1e-3, 10), z, true); break;
      default: sf::noise(out.data(), B, d, z, true); break;
    }
  } catch (const sf::Error&) {
  }
  if (out[n] != guard) __builtin_trap();  // wrote past the output
  return 0;
}
