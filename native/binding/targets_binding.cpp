// Bindings of the score-target kernels (native/core/targets.hpp). Every function takes
// its output buffer first, then inputs, the shape (B, d) and finally `async`.
#include "binding.hpp"

namespace sfb {
namespace {

// out = f(u, w) with two per-sample coefficients: perturb, conditionalScore, velocityTarget.
using AffineFn = void (*)(float*, const float*, const float*, size_t, size_t, sf::Coef, sf::Coef, bool);

class AffineTask : public Task {
 public:
  AffineFn fn = nullptr;
  float* out = nullptr;
  const float* u = nullptr;
  const float* w = nullptr;
  size_t B = 0, d = 0;
  sf::Coef a, b;
  void Execute(bool inline_ok) override { fn(out, u, w, B, d, a, b, inline_ok); }
};

// (out, u, w, B, d, a, b, async)
Napi::Value AffineCall(const Napi::CallbackInfo& info, AffineFn fn, const char* un, const char* wn,
                       const char* an, const char* bn) {
  auto t = std::make_unique<AffineTask>();
  ArgAsync(info[7], t.get());
  t->fn = fn;
  t->B = ArgSize(info[3], "batch");
  t->d = ArgSize(info[4], "dim");
  const size_t n = Elements(info, t->B, t->d);
  t->out = ArgF32(info[0], "out", n, t.get()).data;
  t->u = ArgF32(info[1], un, n, t.get()).data;
  t->w = ArgF32(info[2], wn, n, t.get()).data;
  t->a = ArgCoef(info[5], an, t->B, t.get());
  t->b = ArgCoef(info[6], bn, t->B, t.get());
  CheckAlias(info.Env(), "out", t->out, n,
             {{un, t->u, n, true}, {wn, t->w, n, true}, {an, t->a.per, t->B, false}, {bn, t->b.per, t->B, false}});
  t->out = t->Stage(info[0], t->out, n, true);
  t->u = t->StageIn(info[1], t->u, n);
  t->w = t->StageIn(info[2], t->w, n);
  t->StageCoef(info[5], t->a, t->B);
  t->StageCoef(info[6], t->b, t->B);
  return Run(info.Env(), std::move(t));
}

Napi::Value Perturb(const Napi::CallbackInfo& info) {
  return AffineCall(info, sf::perturb, "x0", "eps", "alpha", "sigma");
}
Napi::Value ConditionalScore(const Napi::CallbackInfo& info) {
  return AffineCall(info, sf::conditional_score, "x", "x0", "alpha", "sigma");
}
Napi::Value VelocityTarget(const Napi::CallbackInfo& info) {
  return AffineCall(info, sf::velocity_target, "x0", "eps", "dAlpha", "dSigma");
}

class ConvertTask : public Task {
 public:
  sf::Param from = sf::Param::Eps, to = sf::Param::Eps;
  float* out = nullptr;
  const float* model = nullptr;
  const float* x = nullptr;
  size_t B = 0, d = 0;
  sf::Coef alpha, sigma;
  void Execute(bool inline_ok) override { sf::convert(from, to, out, model, x, B, d, alpha, sigma, inline_ok); }
};

sf::Param ArgParam(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const size_t v = ArgSize(info[i], name);
  if (v > 3) ThrowCoded(info.Env(), sf::code::kRange, std::string("Expected 0..3 for ") + name + " but received " + std::to_string(v));
  return static_cast<sf::Param>(v);
}

// (from, to, out, model, x, B, d, alpha, sigma, async)
Napi::Value Convert(const Napi::CallbackInfo& info) {
  auto t = std::make_unique<ConvertTask>();
  ArgAsync(info[9], t.get());
  t->from = ArgParam(info, 0, "from");
  t->to = ArgParam(info, 1, "to");
  t->B = ArgSize(info[5], "batch");
  t->d = ArgSize(info[6], "dim");
  const size_t n = Elements(info, t->B, t->d);
  t->out = ArgF32(info[2], "out", n, t.get()).data;
  t->model = ArgF32(info[3], "modelOutput", n, t.get()).data;
  t->x = ArgF32(info[4], "x", n, t.get()).data;
  t->alpha = ArgCoef(info[7], "alpha", t->B, t.get());
  t->sigma = ArgCoef(info[8], "sigma", t->B, t.get());
  CheckAlias(info.Env(), "out", t->out, n,
             {{"modelOutput", t->model, n, true}, {"x", t->x, n, true}, {"alpha", t->alpha.per, t->B, false},
              {"sigma", t->sigma.per, t->B, false}});
  t->out = t->Stage(info[2], t->out, n, true);
  t->model = t->StageIn(info[3], t->model, n);
  t->x = t->StageIn(info[4], t->x, n);
  t->StageCoef(info[7], t->alpha, t->B);
  t->StageCoef(info[8], t->sigma, t->B);
  return Run(info.Env(), std::move(t));
}

class LossTask : public Task {
 public:
  const float* pred = nullptr;
  const float* target = nullptr;
  float* grad = nullptr;
  size_t B = 0, d = 0;
  sf::Coef weight;
  double loss = 0.0;
  void Execute(bool inline_ok) override { loss = sf::dsm_loss(pred, target, B, d, weight, grad, inline_ok); }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, loss); }
};

// (pred, target, B, d, weight, grad|null, async) -> loss
Napi::Value DsmLoss(const Napi::CallbackInfo& info) {
  auto t = std::make_unique<LossTask>();
  ArgAsync(info[6], t.get());
  t->B = ArgSize(info[2], "batch");
  t->d = ArgSize(info[3], "dim");
  const size_t n = Elements(info, t->B, t->d);
  t->pred = ArgF32(info[0], "prediction", n, t.get()).data;
  t->target = ArgF32(info[1], "target", n, t.get()).data;
  t->weight = ArgCoef(info[4], "weight", t->B, t.get());
  t->grad = ArgOptF32(info[5], "gradOut", n, t.get()).data;
  CheckAlias(info.Env(), "options.gradOut", t->grad, n,
             {{"prediction", t->pred, n, true}, {"target", t->target, n, true}, {"options.weight", t->weight.per, t->B, false}});
  t->pred = t->StageIn(info[0], t->pred, n);
  t->target = t->StageIn(info[1], t->target, n);
  t->StageCoef(info[4], t->weight, t->B);
  t->grad = t->Stage(info[5], t->grad, n, true);
  return Run(info.Env(), std::move(t));
}

class RandnTask : public Task {
 public:
  float* out = nullptr;
  size_t B = 0, d = 0;
  uint64_t seed = 0, offset = 0;
  uint32_t stream = 0;
  void Execute(bool inline_ok) override { sf::randn(out, B, d, seed, stream, offset, inline_ok); }
};

// (out, B, d, seed: bigint, stream, offset, async)
Napi::Value Randn(const Napi::CallbackInfo& info) {
  auto t = std::make_unique<RandnTask>();
  ArgAsync(info[6], t.get());
  t->B = ArgSize(info[1], "batch");
  t->d = ArgSize(info[2], "dim");
  if (t->d > (size_t{1} << 33)) {
    ThrowCoded(info.Env(), sf::code::kRange, "Expected at most 2^33 for dim but received " + std::to_string(t->d));
  }
  t->out = ArgF32(info[0], "out", Elements(info, t->B, t->d), t.get()).data;
  if (!info[3].IsBigInt()) ThrowCoded(info.Env(), sf::code::kType, "Expected a bigint for seed but received another type", true);
  bool lossless = false;
  t->seed = info[3].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) ThrowCoded(info.Env(), sf::code::kRange, "Expected a seed from 0 to 2^64 - 1 for seed but received one outside");
  const size_t stream = ArgSize(info[4], "stream");
  if (stream > 0xffffffffu) ThrowCoded(info.Env(), sf::code::kRange, "Expected a stream below 2^32 for stream but received " + std::to_string(stream));
  t->stream = static_cast<uint32_t>(stream);
  t->offset = ArgSize(info[5], "offset");
  t->out = t->Stage(info[0], t->out, t->B * t->d, true);
  return Run(info.Env(), std::move(t));
}

class TriadTask : public Task {
 public:
  float* a = nullptr;
  const float* b = nullptr;
  const float* c = nullptr;
  float s = 0;
  size_t n = 0;
  void Execute(bool inline_ok) override { sf::stream_triad(a, b, c, s, n, inline_ok); }
};

// (a, b, c, s, async): the benchmark's bandwidth reference.
Napi::Value StreamTriad(const Napi::CallbackInfo& info) {
  auto t = std::make_unique<TriadTask>();
  ArgAsync(info[4], t.get());
  F32 a = ArgF32(info[0], "a", t.get());
  t->a = a.data;
  t->n = a.length;
  t->b = ArgF32(info[1], "b", a.length, t.get()).data;
  t->c = ArgF32(info[2], "c", a.length, t.get()).data;
  t->s = static_cast<float>(ArgNumber(info[3], "s"));
  t->a = t->Stage(info[0], t->a, t->n, true);
  t->b = t->StageIn(info[1], t->b, t->n);
  t->c = t->StageIn(info[2], t->c, t->n);
  return Run(info.Env(), std::move(t));
}

// (kind: 0 fma | 1 exp, iters) -> seconds (sync: a benchmark probe)
Napi::Value Probe(const Napi::CallbackInfo& info) {
  const size_t kind = ArgSize(info[0], "kind");
  const size_t iters = ArgSize(info[1], "iters");
  const double s = kind == 0 ? sf::probe_fma_peak(iters, false) : sf::probe_exp_rate(4096, iters, false);
  return Napi::Number::New(info.Env(), s);
}

}  // namespace

void InitTargets(Napi::Env env, Napi::Object exports) {
  exports.Set("perturb", Napi::Function::New(env, Perturb, "perturb"));
  exports.Set("conditionalScore", Napi::Function::New(env, ConditionalScore, "conditionalScore"));
  exports.Set("velocityTarget", Napi::Function::New(env, VelocityTarget, "velocityTarget"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("dsmLoss", Napi::Function::New(env, DsmLoss, "dsmLoss"));
  exports.Set("randn", Napi::Function::New(env, Randn, "randn"));
  exports.Set("streamTriad", Napi::Function::New(env, StreamTriad, "streamTriad"));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
}

}  // namespace sfb
