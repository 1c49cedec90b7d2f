// Bindings of the ODE/SDE step kernels (native/core/steps.hpp).
#include "binding.hpp"
#include "steps.hpp"

#include <vector>

namespace sfb {
namespace {

// Noise: the request's seed (bigint), seeds (BigUint64Array|null), stream and offset.
sf::NoiseSpec ArgNoise(const Napi::Object& r, size_t B, std::vector<uint64_t>* copy) {
  Napi::Env env = r.Env();
  sf::NoiseSpec z;
  const Napi::Value seed = Field(r, "seed"), seeds = Field(r, "seeds");
  if (!seed.IsBigInt()) ThrowCoded(env, sf::code::kType, "Expected a bigint for seed but received another type", true);
  bool lossless = false;
  z.seed = seed.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) ThrowCoded(env, sf::code::kRange, "Expected a seed from 0 to 2^64 - 1 for seed but received one outside");
  if (!seeds.IsNull() && !seeds.IsUndefined()) {
    if (!seeds.IsTypedArray() || seeds.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array ||
        seeds.As<Napi::TypedArray>().ElementLength() != B) {
      ThrowCoded(env, sf::code::kShape, "Expected a BigUint64Array of one seed per sample for seeds but received another value");
    }
    const uint64_t* p = reinterpret_cast<const uint64_t*>(seeds.As<Napi::BigUint64Array>().Data());
    copy->assign(p, p + B);  // a private copy: the work may run after the caller changed it
    z.seeds = copy->data();
  }
  const size_t stream = ArgSize(Field(r, "stream"), "stream");
  if (stream > 0xffffffffu) ThrowCoded(env, sf::code::kRange, "Expected a stream below 2^32 for stream but received more");
  z.stream = static_cast<uint32_t>(stream);
  z.offset = ArgSize(Field(r, "offset"), "offset");
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

// ({ kind, out, x, denoised|null, xNext|null, denoisedNext|null, batch, dim, a, b, sNoise, seed,
//   seeds|null, stream, offset, async }): a is sigma; b is sigmaNext, the step size (Langevin) or
// sigmaHat (churn).
Napi::Value Step(const Napi::CallbackInfo& info) {
  const Napi::Object r = ArgRequest(info);
  auto t = std::make_unique<StepTask>();
  ArgAsync(Field(r, "async"), t.get());
  const size_t kind = ArgSize(Field(r, "kind"), "kind");
  if (kind > 5) ThrowCoded(info.Env(), sf::code::kRange, "Expected a step kind 0..5 for kind but received " + std::to_string(kind));
  t->kind = static_cast<int>(kind);
  t->B = ArgSize(Field(r, "batch"), "batch");
  t->d = ArgSize(Field(r, "dim"), "dim");
  const size_t n = Elements(info, t->B, t->d);
  const Napi::Value outv = Field(r, "out"), xv = Field(r, "x"), dv = Field(r, "denoised"), xpv = Field(r, "xNext"),
                    dpv = Field(r, "denoisedNext"), av = Field(r, "a"), bv = Field(r, "b");
  t->out = ArgF32(outv, "out", n, t.get()).data;
  if (kind != 5) t->x = ArgF32(xv, "x", n, t.get()).data;
  if (kind < 4) t->D = ArgF32(dv, "denoised", n, t.get()).data;
  if (kind == 1) {
    t->xp = ArgF32(xpv, "xNext", n, t.get()).data;
    t->Dp = ArgF32(dpv, "denoisedNext", n, t.get()).data;
  }
  const char* bname = kind == 3 ? "stepSize" : kind == 4 ? "sigmaHat" : "sigmaNext";
  if (kind != 5) {
    t->a = ArgCoef(av, "sigma", t->B, t.get());
    t->b = ArgCoef(bv, bname, t->B, t.get());
  }
  t->s_noise = kind == 4 ? ArgNumber(Field(r, "sNoise"), "sNoise") : 1.0;
  if (kind >= 2) t->z = ArgNoise(r, t->B, &t->seeds);
  // Noise is drawn into out before the inputs are read: out may not overlap them at all then.
  const bool noisy = kind >= 2;
  if (kind != 5) {
    CheckAlias(info.Env(), "out", t->out, n,
               {{"x", t->x, n, !noisy}, {"denoised", t->D, n, !noisy}, {"xNext", t->xp, n, true},
                {"denoisedNext", t->Dp, n, true}, {"sigma", t->a.per, t->B, false}, {bname, t->b.per, t->B, false}});
  }
  t->out = t->Stage(outv, t->out, n, true);
  t->x = t->StageIn(xv, t->x, n);
  t->D = t->StageIn(dv, t->D, n);
  t->xp = t->StageIn(xpv, t->xp, n);
  t->Dp = t->StageIn(dpv, t->Dp, n);
  t->StageCoef(av, t->a, t->B);
  t->StageCoef(bv, t->b, t->B);
  return Run(info.Env(), std::move(t));
}

}  // namespace

void InitSteps(Napi::Env env, Napi::Object exports) {
  exports.Set("step", Napi::Function::New(env, Step, "step"));
}

}  // namespace sfb
