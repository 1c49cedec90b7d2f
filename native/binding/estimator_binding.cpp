// Bindings of the estimator (native/core/estimator.hpp). A reference set crosses into
// JavaScript as an External holding a shared_ptr; every task copies the shared_ptr, so a
// set stays alive while queued work uses it even if JavaScript drops it.
#include <cmath>
#include <memory>

#include "binding.hpp"
#include "estimator.hpp"
#include "sample.hpp"

#include <atomic>

namespace sfb {
namespace {

using RefPtr = std::shared_ptr<sf::ReferenceSet>;

Napi::Value WrapRef(Napi::Env env, RefPtr ref) {
  auto* holder = new RefPtr(std::move(ref));
  const size_t bytes = (*holder)->bytes();
  Napi::External<RefPtr> ext =
      Napi::External<RefPtr>::New(env, holder, [](Napi::Env, RefPtr* p) { delete p; });
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
  return ext;
}

RefPtr ArgRef(const Napi::Value& v) {
  if (!v.IsExternal()) {
    ThrowCoded(v.Env(), sf::code::kType, "Expected a scorefield reference set handle for ref but received another value", true);
  }
  return *v.As<Napi::External<RefPtr>>().Data();
}

// A kernel: its id (0 gaussian, 1 poisson, 2 radial tanh, 3 radial exp), or an array [id, D].
sf::KernelSpec ArgKernel(const Napi::Value& v) {
  Napi::Env env = v.Env();
  sf::KernelSpec k;
  double kind = 0;
  if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    if (a.Length() != 2 || !a.Get(0u).IsNumber() || !a.Get(1u).IsNumber()) {
      ThrowCoded(env, sf::code::kType, "Expected [id, D] for kernel but received another array", true);
    }
    kind = a.Get(0u).As<Napi::Number>().DoubleValue();
    k.D = a.Get(1u).As<Napi::Number>().DoubleValue();
  } else {
    kind = ArgNumber(v, "kernel");
  }
  if (!(kind >= 0 && kind <= 3) || kind != static_cast<double>(static_cast<int>(kind))) {
    ThrowCoded(env, sf::code::kRange, "Expected a known kernel id for kernel but received " + sf::num(kind));
  }
  if (!(k.D > 0 && std::isfinite(k.D))) ThrowCoded(env, sf::code::kRange, "Expected a positive finite D for kernel.D but received " + sf::num(k.D));
  k.kind = static_cast<sf::KernelKind>(static_cast<int>(kind));
  return k;
}

// ---- build
class BuildTask : public Task {
 public:
  const float* data = nullptr;
  size_t n = 0, d = 0;
  bool panels = true, screen = true;
  RefPtr ref;
  void Execute(bool inline_ok) override { ref = sf::ReferenceSet::build(data, n, d, inline_ok, panels, screen); }
  Napi::Value Result(Napi::Env env) override { return WrapRef(env, ref); }
};

// (data, N, d, async, panels?, screen?) -> handle
Napi::Value RefBuild(const Napi::CallbackInfo& info) {
  auto t = std::make_unique<BuildTask>();
  ArgAsync(info[3], t.get());
  if (!info[4].IsUndefined()) {
    if (!info[4].IsBoolean()) ThrowCoded(info.Env(), sf::code::kType, "Expected a boolean for panels but received another type", true);
    t->panels = info[4].As<Napi::Boolean>().Value();
  }
  if (!info[5].IsUndefined()) {
    if (!info[5].IsBoolean()) ThrowCoded(info.Env(), sf::code::kType, "Expected a boolean for screen but received another type", true);
    t->screen = info[5].As<Napi::Boolean>().Value();
  }
  t->n = ArgSize(info[1], "size");
  t->d = ArgSize(info[2], "dim");
  if (t->n == 0 || t->d == 0) {
    ThrowCoded(info.Env(), sf::code::kShape, "Expected at least one reference point of dim >= 1 for data but received none");
  }
  size_t len = 0;
  try {
    len = sf::checked_mul(t->n, t->d, "size x dim");
  } catch (const sf::Error& e) {
    ThrowCoded(info.Env(), e.code(), e.what());
  }
  t->data = ArgF32(info[0], "data", len, t.get()).data;
  t->data = t->StageIn(info[0], t->data, len);
  return Run(info.Env(), std::move(t));
}

// (handle) -> { size, dim, bytes }
Napi::Value RefInfo(const Napi::CallbackInfo& info) {
  RefPtr ref = ArgRef(info[0]);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("size", static_cast<double>(ref->size()));
  o.Set("dim", static_cast<double>(ref->dim()));
  o.Set("bytes", static_cast<double>(ref->bytes()));
  Napi::Float32Array c = Napi::Float32Array::New(info.Env(), ref->dim());
  std::copy(ref->centre(), ref->centre() + ref->dim(), c.Data());
  o.Set("centre", c);
  return o;
}

// refRows(ref, indices: Uint32Array, out: Float32Array): the caller's rows, gathered (small, sync).
Napi::Value RefRows(const Napi::CallbackInfo& info) {
  RefPtr ref = ArgRef(info[0]);
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a Uint32Array for indices but received another type", true);
  }
  Napi::Uint32Array idx = info[1].As<Napi::Uint32Array>();
  const size_t n = idx.ElementLength();
  F32 out = ArgF32(info[2], "out", Elements(info, n, ref->dim()), nullptr);
  try {
    ref->gather(idx.Data(), n, out.data);
  } catch (const sf::Error& e) {
    ThrowCoded(info.Env(), e.code(), e.what());
  }
  return info.Env().Undefined();
}

// Reads the request's x, batch, alpha, sigma and kernel.
void ArgQueries(const Napi::CallbackInfo& info, const Napi::Object& r, const sf::ReferenceSet& ref, sf::EstimateRequest& req,
                Task* t) {
  req.B = ArgSize(Field(r, "batch"), "batch");
  const size_t n = Elements(info, req.B, ref.dim());
  req.x = ArgF32(Field(r, "x"), "x", n, t).data;
  req.alpha = ArgCoef(Field(r, "alpha"), "alpha", req.B, t);
  req.sigma = ArgCoef(Field(r, "sigma"), "sigma", req.B, t);
  req.kernel = ArgKernel(Field(r, "kernel"));
}

// Asynchronous calls read private copies of x and of per-sample alpha and sigma (see
// Task::Stage).
void StageQueries(const Napi::Object& r, sf::EstimateRequest& req, size_t d, Task* t) {
  req.x = t->StageIn(Field(r, "x"), req.x, req.B * d);
  t->StageCoef(Field(r, "alpha"), req.alpha, req.B);
  t->StageCoef(Field(r, "sigma"), req.sigma, req.B);
}

constexpr const char* kOutKeys[6] = {"mean", "score", "logDensity", "ess", "traceCov", "divergence"};

// The six optional output buffers: the fields mean, score, logDensity, ess, traceCov and
// divergence of `out` (an object; absent or null fields are not computed).
sf::EstimateOutputs ArgOutputs(const Napi::Value& outv, size_t B, size_t d, Task* keep) {
  sf::EstimateOutputs out;
  if (!outv.IsObject()) ThrowCoded(outv.Env(), sf::code::kType, "Expected an object of output buffers for out but received another value", true);
  const Napi::Object o = outv.As<Napi::Object>();
  out.mean = ArgOptF32(o.Get("mean"), "out.mean", B * d, keep).data;
  out.score = ArgOptF32(o.Get("score"), "out.score", B * d, keep).data;
  out.log_density = ArgOptF32(o.Get("logDensity"), "out.logDensity", B, keep).data;
  out.ess = ArgOptF32(o.Get("ess"), "out.ess", B, keep).data;
  out.trace_cov = ArgOptF32(o.Get("traceCov"), "out.traceCov", B, keep).data;
  out.divergence = ArgOptF32(o.Get("divergence"), "out.divergence", B, keep).data;
  return out;
}

// Outputs are written while x and per-sample coefficients are still read: no output may
// overlap them or another output.
void CheckOutputs(Napi::Env env, const sf::EstimateOutputs& o, size_t B, size_t d, const float* x, const sf::Coef& alpha,
                  const sf::Coef& sigma) {
  const float* outs[] = {o.mean, o.score, o.log_density, o.ess, o.trace_cov, o.divergence};
  const size_t lens[] = {B * d, B * d, B, B, B, B};
  const char* names[] = {"out.mean", "out.score", "out.logDensity", "out.ess", "out.traceCov", "out.divergence"};
  for (int a = 0; a < 6; ++a) {
    CheckAlias(env, names[a], outs[a], lens[a], {{"x", x, B * d, false}, {"alpha", alpha.per, B, false}, {"sigma", sigma.per, B, false}});
    for (int b = a + 1; b < 6; ++b) CheckAlias(env, names[a], outs[a], lens[a], {{names[b], outs[b], lens[b], false}});
  }
}

// ---- estimate
class EstimateTask : public Task {
 public:
  RefPtr ref;
  sf::EstimateRequest req;
  sf::EstimateOutputs out;
  sf::EstimateStats stats;
  void Execute(bool inline_ok) override { sf::estimate(*ref, req, out, inline_ok, &stats); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("refined", static_cast<double>(stats.refined));
    o.Set("scratchBytes", static_cast<double>(stats.scratch_bytes));
    o.Set("pairs", static_cast<double>(stats.pairs));
    o.Set("densePairs", static_cast<double>(stats.dense_pairs));
    o.Set("exactPairs", static_cast<double>(stats.exact_pairs));
    o.Set("sparseQueries", static_cast<double>(stats.sparse_queries));
    o.Set("wideTiles", static_cast<double>(stats.wide_tiles));
    o.Set("skippedBlocks", static_cast<double>(stats.skipped_blocks));
    o.Set("screenedRows", static_cast<double>(stats.screened_rows));
    o.Set("screenSkippedRows", static_cast<double>(stats.screen_skipped_rows));
    o.Set("decideSeconds", static_cast<double>(stats.decide_ns) * 1e-9);
    return o;
  }
};

// ({ ref, x, batch, alpha, sigma, kernel, out: { mean?, score?, logDensity?, ess?, traceCov?,
//   divergence? }, async }) -> stats
Napi::Value Estimate(const Napi::CallbackInfo& info) {
  const Napi::Object r = ArgRequest(info);
  auto t = std::make_unique<EstimateTask>();
  ArgAsync(Field(r, "async"), t.get());
  t->ref = ArgRef(Field(r, "ref"));
  ArgQueries(info, r, *t->ref, t->req, t.get());
  const size_t B = t->req.B, d = t->ref->dim();
  const Napi::Value outv = Field(r, "out");
  t->out = ArgOutputs(outv, B, d, t.get());
  CheckOutputs(info.Env(), t->out, B, d, t->req.x, t->req.alpha, t->req.sigma);
  const size_t lens[] = {B * d, B * d, B, B, B, B};
  StageQueries(r, t->req, d, t.get());
  sf::EstimateOutputs& w = t->out;
  float** dst[] = {&w.mean, &w.score, &w.log_density, &w.ess, &w.trace_cov, &w.divergence};
  const Napi::Object o = outv.As<Napi::Object>();
  for (int a = 0; a < 6; ++a) *dst[a] = t->Stage(o.Get(kOutKeys[a]), *dst[a], lens[a], true);
  return Run(info.Env(), std::move(t));
}

// ---- partial states
Napi::Float64Array ToF64(Napi::Env env, const std::vector<double>& v) {
  Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Object StateToJs(Napi::Env env, const sf::PartialState& st) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("batch", static_cast<double>(st.B));
  o.Set("dim", static_cast<double>(st.d));
  o.Set("count", st.count);
  o.Set("origin", ToF64(env, st.origin));
  o.Set("max", ToF64(env, st.max));
  o.Set("sum", ToF64(env, st.sum));
  o.Set("sumSq", ToF64(env, st.sumsq));
  o.Set("sumYY", ToF64(env, st.sumyy));
  if (!st.acc.empty()) {
    o.Set("weighted", ToF64(env, st.acc));
  } else {
    o.Set("weighted", env.Null());
  }
  return o;
}

std::vector<double> F64Field(Napi::Env env, const Napi::Object& o, const char* name, size_t len) {
  Napi::Value v = o.Get(name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      v.As<Napi::Float64Array>().ElementLength() != len) {
    ThrowCoded(env, sf::code::kShape, std::string("Expected a Float64Array of length ") + std::to_string(len) +
                                          " for state." + name + " but received another value");
  }
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  return std::vector<double>(a.Data(), a.Data() + len);
}

sf::PartialState StateFromJs(const Napi::CallbackInfo& info, const Napi::Value& v) {
  Napi::Env env = info.Env();
  if (!v.IsObject()) ThrowCoded(env, sf::code::kType, "Expected a partial state object for state but received another value", true);
  Napi::Object o = v.As<Napi::Object>();
  sf::PartialState st;
  auto num = [&](const char* name) {
    Napi::Value x = o.Get(name);
    if (!x.IsNumber()) ThrowCoded(env, sf::code::kType, std::string("Expected a number for state.") + name + " but received another value", true);
    return x.As<Napi::Number>().DoubleValue();
  };
  const double B = num("batch"), d = num("dim");
  if (!(B >= 0 && d >= 1 && B <= 9007199254740991.0 && d <= 9007199254740991.0) || B != static_cast<double>(static_cast<size_t>(B)) ||
      d != static_cast<double>(static_cast<size_t>(d))) {
    ThrowCoded(env, sf::code::kRange, "Expected non-negative integers for state.batch and state.dim but received others");
  }
  st.B = static_cast<size_t>(B);
  st.d = static_cast<size_t>(d);
  st.count = num("count");
  size_t bd = 0;
  try {
    bd = sf::checked_mul(st.B, st.d, "state batch x dim");
  } catch (const sf::Error& e) {
    ThrowCoded(env, e.code(), e.what());
  }
  st.origin = F64Field(env, o, "origin", st.d);
  st.max = F64Field(env, o, "max", st.B);
  st.sum = F64Field(env, o, "sum", st.B);
  st.sumsq = F64Field(env, o, "sumSq", st.B);
  st.sumyy = F64Field(env, o, "sumYY", st.B);
  if (!o.Get("weighted").IsNull() && !o.Get("weighted").IsUndefined()) st.acc = F64Field(env, o, "weighted", bd);
  return st;
}

class PartialTask : public Task {
 public:
  RefPtr ref;
  sf::EstimateRequest req;
  sf::PartialState st;
  void Execute(bool inline_ok) override { st = sf::estimate_partial(*ref, req, inline_ok); }
  Napi::Value Result(Napi::Env env) override { return StateToJs(env, st); }
};

// ({ ref, x, batch, alpha, sigma, kernel, start, end, weighted, async }) -> state
Napi::Value EstimatePartial(const Napi::CallbackInfo& info) {
  const Napi::Object r = ArgRequest(info);
  auto t = std::make_unique<PartialTask>();
  ArgAsync(Field(r, "async"), t.get());
  t->ref = ArgRef(Field(r, "ref"));
  ArgQueries(info, r, *t->ref, t->req, t.get());
  t->req.begin = ArgSize(Field(r, "start"), "start");
  t->req.end = ArgSize(Field(r, "end"), "end");
  if (t->req.begin > t->req.end || t->req.end > t->ref->size()) {
    ThrowCoded(info.Env(), sf::code::kRange, "Expected 0 <= start <= end <= size for the shard but received start " +
                                                 std::to_string(t->req.begin) + ", end " + std::to_string(t->req.end));
  }
  t->req.weighted_sum = ArgBool(Field(r, "weighted"), "weighted");
  StageQueries(r, t->req, t->ref->dim(), t.get());
  return Run(info.Env(), std::move(t));
}

// (states: array) -> merged state (sync: O(B d) per state)
Napi::Value MergePartials(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a non-empty array of partial states for states but received another value", true);
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  sf::PartialState st = StateFromJs(info, arr.Get(0u));
  for (uint32_t i = 1; i < arr.Length(); ++i) {
    try {
      sf::merge_partial(st, StateFromJs(info, arr.Get(i)));
    } catch (const sf::Error& e) {
      ThrowCoded(info.Env(), e.code(), e.what());
    }
  }
  return StateToJs(info.Env(), st);
}

// ({ state, x, alpha, sigma, kernel, out: { mean?, ... } }) (sync: O(B d))
Napi::Value FinalizePartial(const Napi::CallbackInfo& info) {
  const Napi::Object r = ArgRequest(info);
  sf::PartialState st = StateFromJs(info, Field(r, "state"));
  const size_t B = st.B, d = st.d;
  const float* x = ArgF32(Field(r, "x"), "x", B * d, nullptr).data;
  sf::Coef alpha = ArgCoef(Field(r, "alpha"), "alpha", B, nullptr), sigma = ArgCoef(Field(r, "sigma"), "sigma", B, nullptr);
  sf::KernelSpec kernel = ArgKernel(Field(r, "kernel"));
  const sf::EstimateOutputs out = ArgOutputs(Field(r, "out"), B, d, nullptr);
  CheckOutputs(info.Env(), out, B, d, x, alpha, sigma);
  if (st.acc.empty() && (out.mean || out.score || out.trace_cov || out.divergence)) {
    ThrowCoded(info.Env(), sf::code::kShape, "Expected a state with weighted sums for mean, score, traceCov or divergence but received one without");
  }
  try {
    sf::finalize_partial(st, x, alpha, sigma, kernel, out);
  } catch (const sf::Error& e) {
    ThrowCoded(info.Env(), e.code(), e.what());
  }
  return info.Env().Undefined();
}

// (handle, B, weighted) -> bytes
Napi::Value ScratchBytes(const Napi::CallbackInfo& info) {
  RefPtr ref = ArgRef(info[0]);
  return Napi::Number::New(info.Env(), static_cast<double>(sf::estimate_scratch_bytes(*ref, ArgSize(info[1], "batch"), ArgBool(info[2], "weighted"))));
}

class StableTask : public Task {
 public:
  RefPtr ref;
  sf::EstimateRequest req;
  const float* x0 = nullptr;
  float* out = nullptr;
  void Execute(bool inline_ok) override { sf::stable_targets(*ref, x0, req, out, inline_ok); }
};

// ({ ref, x0, x, batch, alpha, sigma, kernel, out, async })
Napi::Value StableTargets(const Napi::CallbackInfo& info) {
  const Napi::Object r = ArgRequest(info);
  auto t = std::make_unique<StableTask>();
  ArgAsync(Field(r, "async"), t.get());
  t->ref = ArgRef(Field(r, "ref"));
  ArgQueries(info, r, *t->ref, t->req, t.get());
  const size_t n = t->req.B * t->ref->dim();
  t->x0 = ArgF32(Field(r, "x0"), "x0Batch", n, t.get()).data;
  t->out = ArgF32(Field(r, "out"), "out", n, t.get()).data;
  CheckAlias(info.Env(), "out", t->out, n,
             {{"x0Batch", t->x0, n, false}, {"xBatch", t->req.x, n, false}, {"alpha", t->req.alpha.per, t->req.B, false},
              {"sigma", t->req.sigma.per, t->req.B, false}});
  StageQueries(r, t->req, t->ref->dim(), t.get());
  t->x0 = t->StageIn(Field(r, "x0"), t->x0, n);
  t->out = t->Stage(Field(r, "out"), t->out, n, true);
  return Run(info.Env(), std::move(t));
}

// ---- the native sampler
using AbortFlag = std::shared_ptr<std::atomic<bool>>;

Napi::Value NewAbortToken(const Napi::CallbackInfo& info) {
  auto* holder = new AbortFlag(std::make_shared<std::atomic<bool>>(false));
  return Napi::External<AbortFlag>::New(info.Env(), holder, [](Napi::Env, AbortFlag* p) { delete p; });
}

Napi::Value AbortToken(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) ThrowCoded(info.Env(), sf::code::kType, "Expected an abort token for token but received another value", true);
  (*info[0].As<Napi::External<AbortFlag>>().Data())->store(true);
  return info.Env().Undefined();
}

class SampleTask : public Task {
 public:
  RefPtr ref;
  sf::SampleRequest req;
  std::vector<double> sigmas;
  std::vector<uint64_t> seeds;
  AbortFlag abort;
  Napi::ThreadSafeFunction progress;
  bool has_progress = false;
  sf::SampleStats stats;
  size_t progress_calls = 0;  // queued for JavaScript (the sampler calls progress on one thread)
  ~SampleTask() override {
    if (has_progress) progress.Release();
  }
  void Execute(bool inline_ok) override {
    req.sigmas = sigmas.data();
    req.n_sigmas = sigmas.size();
    req.abort = abort.get();
    if (has_progress) {
      req.progress = [this](size_t done, size_t total) {
        auto* data = new std::pair<size_t, size_t>(done, total);
        const napi_status st = progress.NonBlockingCall(data, [](Napi::Env env, Napi::Function cb, std::pair<size_t, size_t>* p) {
          if (env != nullptr && cb != nullptr) {
            try {
              cb.Call({Napi::Number::New(env, static_cast<double>(p->first)), Napi::Number::New(env, static_cast<double>(p->second))});
            } catch (...) {
              // a throwing progress callback does not stop the sampler
            }
          }
          delete p;
        });
        if (st != napi_ok) {
          delete data;
        } else {
          ++progress_calls;
        }
      };
    }
    stats = sf::sample_reference(*ref, req, inline_ok);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("nfe", static_cast<double>(stats.nfe));
    o.Set("seconds", stats.seconds);
    o.Set("estimatorSeconds", stats.estimator_seconds);
    o.Set("progressCalls", static_cast<double>(progress_calls));
    return o;
  }
};

// ({ ref, x (in/out), batch, sigmas: Float64Array, heun, kernel, sChurn, sTmin, sTmax, sNoise,
//   seed: bigint, seeds: BigUint64Array|null, offset, onProgress|null, abortToken }) -> Promise<stats>
Napi::Value Sample(const Napi::CallbackInfo& info) {
  const Napi::Object r = ArgRequest(info);
  auto t = std::make_unique<SampleTask>();
  t->SetAsync(true);
  t->ref = ArgRef(Field(r, "ref"));
  t->req.B = ArgSize(Field(r, "batch"), "batch");
  const size_t n = Elements(info, t->req.B, t->ref->dim());
  t->req.x = ArgF32(Field(r, "x"), "x", n, t.get()).data;
  t->req.x = t->Stage(Field(r, "x"), t->req.x, n, true);  // read and written for the whole run
  const Napi::Value sgv = Field(r, "sigmas");
  if (!sgv.IsTypedArray() || sgv.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      sgv.As<Napi::TypedArray>().ElementLength() < 2) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a Float64Array of at least 2 levels for sigmas but received another value", true);
  }
  Napi::Float64Array sg = sgv.As<Napi::Float64Array>();
  t->sigmas.assign(sg.Data(), sg.Data() + sg.ElementLength());
  for (size_t i = 0; i < t->sigmas.size(); ++i) {
    const double v = t->sigmas[i];
    const bool last = i + 1 == t->sigmas.size();
    if (!std::isfinite(v) || v < 0 || (!last && v == 0) || (i > 0 && !(v < t->sigmas[i - 1]))) {
      ThrowCoded(info.Env(), sf::code::kRange, "Expected a strictly decreasing grid of finite levels > 0 (a final 0 allowed) for sigmas but received another at index " + std::to_string(i));
    }
  }
  t->req.heun = ArgBool(Field(r, "heun"), "heun");
  t->req.kernel = ArgKernel(Field(r, "kernel"));
  t->req.s_churn = ArgNumber(Field(r, "sChurn"), "sChurn");
  t->req.s_tmin = ArgNumber(Field(r, "sTmin"), "sTmin");
  t->req.s_tmax = ArgNumber(Field(r, "sTmax"), "sTmax");
  t->req.s_noise = ArgNumber(Field(r, "sNoise"), "sNoise");
  const Napi::Value seedv = Field(r, "seed"), seedsv = Field(r, "seeds"), progv = Field(r, "onProgress"), tokv = Field(r, "abortToken");
  if (!seedv.IsBigInt()) ThrowCoded(info.Env(), sf::code::kType, "Expected a bigint for seed but received another type", true);
  bool lossless = false;
  t->req.noise.seed = seedv.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!seedsv.IsNull() && !seedsv.IsUndefined()) {
    if (!seedsv.IsTypedArray() || seedsv.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array ||
        seedsv.As<Napi::TypedArray>().ElementLength() != t->req.B) {
      ThrowCoded(info.Env(), sf::code::kShape, "Expected a BigUint64Array of one seed per sample for seeds but received another value");
    }
    const uint64_t* seeds = reinterpret_cast<const uint64_t*>(seedsv.As<Napi::BigUint64Array>().Data());
    t->seeds.assign(seeds, seeds + t->req.B);  // a private copy, like x
    t->req.noise.seeds = t->seeds.data();
  }
  t->req.noise.offset = ArgSize(Field(r, "offset"), "offset");
  if (progv.IsFunction()) {
    t->progress = Napi::ThreadSafeFunction::New(info.Env(), progv.As<Napi::Function>(), "scorefield.sample.progress", 0, 1);
    t->has_progress = true;
  }
  if (!tokv.IsExternal()) ThrowCoded(info.Env(), sf::code::kType, "Expected an abort token for abortToken but received another value", true);
  t->abort = *tokv.As<Napi::External<AbortFlag>>().Data();
  return Run(info.Env(), std::move(t));
}

}  // namespace

void InitEstimator(Napi::Env env, Napi::Object exports) {
  exports.Set("refBuild", Napi::Function::New(env, RefBuild, "refBuild"));
  exports.Set("refInfo", Napi::Function::New(env, RefInfo, "refInfo"));
  exports.Set("refRows", Napi::Function::New(env, RefRows, "refRows"));
  exports.Set("estimate", Napi::Function::New(env, Estimate, "estimate"));
  exports.Set("estimatePartial", Napi::Function::New(env, EstimatePartial, "estimatePartial"));
  exports.Set("mergePartials", Napi::Function::New(env, MergePartials, "mergePartials"));
  exports.Set("finalizePartial", Napi::Function::New(env, FinalizePartial, "finalizePartial"));
  exports.Set("scratchBytes", Napi::Function::New(env, ScratchBytes, "scratchBytes"));
  exports.Set("stableTargets", Napi::Function::New(env, StableTargets, "stableTargets"));
  exports.Set("sample", Napi::Function::New(env, Sample, "sample"));
  exports.Set("newAbortToken", Napi::Function::New(env, NewAbortToken, "newAbortToken"));
  exports.Set("abortToken", Napi::Function::New(env, AbortToken, "abortToken"));
}

}  // namespace sfb
