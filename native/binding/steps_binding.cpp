// Bindings of the ODE/SDE step kernels (native/core/steps.hpp).
#include "binding.hpp"
#include "steps.hpp"

#include <vector>

namespace sfb {
namespace {

// Noise: (seed: bigint, seeds: BigUint64Array|null, stream, offset) at positions i..i+3.
sf::NoiseSpec ArgNoise(const Napi::CallbackInfo& info, size_t i, size_t B, std::vector<uint64_t>* copy) {
  sf::NoiseSpec z;
  if (!info[i].IsBigInt()) ThrowCoded(info.Env(), sf::code::kType, "Expected a bigint for seed but received another type", true);
  bool lossless = false;
  z.seed = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) ThrowCoded(info.Env(), sf::code::kRange, "Expected a seed from 0 to 2^64 - 1 for seed but received one outside");
  if (!info[i + 1].IsNull() && !info[i + 1].IsUndefined()) {
    if (!info[i + 1].IsTypedArray() || info[i + 1].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array ||
        info[i + 1].As<Napi::TypedArray>().ElementLength() != B) {
      ThrowCoded(info.Env(), sf::code::kShape, "Expected a BigUint64Array of one seed per sample for seeds but received another value");
    }
    const uint64_t* seeds = reinterpret_cast<const uint64_t*>(info[i + 1].As<Napi::BigUint64Array>().Data());
    copy->assign(seeds, seeds + B);  // a private copy: the work may run after the caller changed it
    z.seeds = copy->data();
  }
  const size_t stream = ArgSize(info, i + 2, "stream");
  if (stream > 0xffffffffu) ThrowCoded(info.Env(), sf::code::kRange, "Expected a stream below 2^32 for stream but received more");
  z.stream = static_cast<uint32_t>(stream);
  z.offset = ArgSize(info, i + 3, "offset");
  return z;
}

class StepTask : public Task {
 public:
  int kind = 0;  // 0 euler, 1 heun, 2 euler-maruyama, 3 langevin, 4 churn, 5 noise only (into out)
  float* out = nullptr;
  const float *x = nullptr, *D = nullptr, *xp = nullptr, *Dp = nullptr;
  size_t B = 0, d = 0;
  sf::Coef a, b;
  double s_noise = 1.0;
  sf::NoiseSpec z;
  std::vector<uint64_t> seeds;
  void Execute(bool inline_ok) override {
    switch (kind) {
      case 0: sf::euler_step(out, x, D, B, d, a, b, inline_ok); break;
      case 1: sf::heun_correct(out, x, D, xp, Dp, B, d, a, b, inline_ok); break;
      case 2: sf::euler_maruyama_step(out, x, D, B, d, a, b, z, inline_ok); break;
      case 3: sf::langevin_step(out, x, D, B, d, a, b, z, inline_ok); break;
      case 4: sf::churn_step(out, x, B, d, a, b, s_noise, z, inline_ok); break;
      default: sf::noise(out, B, d, z, inline_ok); break;
    }
  }
};

// (kind, out, x, D|null, xp|null, Dp|null, B, d, a, b, sNoise, seed, seeds|null, stream, offset, async)
Napi::Value Step(const Napi::CallbackInfo& info) {
  auto t = std::make_unique<StepTask>();
  ArgAsync(info, 15, t.get());
  const size_t kind = ArgSize(info, 0, "kind");
  if (kind > 5) ThrowCoded(info.Env(), sf::code::kRange, "Expected a step kind 0..5 for kind but received " + std::to_string(kind));
  t->kind = static_cast<int>(kind);
  t->B = ArgSize(info, 6, "batch");
  t->d = ArgSize(info, 7, "dim");
  const size_t n = Elements(info, t->B, t->d);
  t->out = ArgF32(info, 1, "out", n, t.get()).data;
  t->x = ArgF32(info, 2, "x", n, t.get()).data;
  if (kind < 4) t->D = ArgF32(info, 3, "denoised", n, t.get()).data;
  if (kind == 1) {
    t->xp = ArgF32(info, 4, "xNext", n, t.get()).data;
    t->Dp = ArgF32(info, 5, "denoisedNext", n, t.get()).data;
  }
  t->a = ArgCoef(info, 8, "sigma", t->B, t.get());
  t->b = ArgCoef(info, 9, kind == 3 ? "stepSize" : kind == 4 ? "sigmaHat" : "sigmaNext", t->B, t.get());
  t->s_noise = ArgNumber(info, 10, "sNoise");
  if (kind >= 2) t->z = ArgNoise(info, 11, t->B, &t->seeds);
  // Noise is drawn into out before the inputs are read: out may not overlap them at all then.
  const bool noisy = kind >= 2;
  if (kind != 5) {
    CheckAlias(info.Env(), "out", t->out, n,
               {{"x", t->x, n, !noisy}, {"denoised", t->D, n, !noisy}, {"xNext", t->xp, n, true},
                {"denoisedNext", t->Dp, n, true}, {"sigma", t->a.per, t->B, false}, {"sigmaNext", t->b.per, t->B, false}});
  }
  t->out = t->Stage(info[1], t->out, n, true);
  if (kind != 5) t->x = t->StageIn(info[2], t->x, n);
  t->D = t->StageIn(info[3], t->D, n);
  t->xp = t->StageIn(info[4], t->xp, n);
  t->Dp = t->StageIn(info[5], t->Dp, n);
  t->StageCoef(info[8], t->a, t->B);
  t->StageCoef(info[9], t->b, t->B);
  return Run(info.Env(), std::move(t));
}

}  // namespace

void InitSteps(Napi::Env env, Napi::Object exports) {
  exports.Set("step", Napi::Function::New(env, Step, "step"));
}

}  // namespace sfb
