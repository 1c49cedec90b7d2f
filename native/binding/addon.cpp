#include <atomic>
#include <cmath>
#include <new>

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

#include "binding.hpp"
#include "dispatch.hpp"
#include "estimator.hpp"
#include "fpenv.hpp"
#include "limits.hpp"
#include "npy.hpp"
#include "screen_bf16.hpp"
#include "thread_pool.hpp"

namespace sfb {

void ThrowCoded(Napi::Env env, const char* code, const std::string& message, bool type) {
  Napi::Error err = type ? Napi::TypeError::New(env, message) : Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

namespace {

class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::unique_ptr<Task> task)
      : Napi::AsyncWorker(env, "scorefield"), task_(std::move(task)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      sf::CallMemory held(task_->staged_bytes());  // the copies count against the memory limit
      task_->Execute(false);
    } catch (const sf::Error& e) {
      Fail(e.code(), e.what());
    } catch (const std::bad_alloc&) {
      Fail(kErrMemory, "Expected enough memory for the working buffers but allocation failed");
    } catch (const std::exception& e) {
      Fail(sf::code::kInternal, e.what());
    }
  }

  void OnOK() override {
    std::string message;
    if (!task_->Finish(Env(), &message)) {
      Napi::Error err = Napi::Error::New(Env(), message);
      err.Set("code", Napi::String::New(Env(), kErrDetached));
      deferred_.Reject(err.Value());
      return;
    }
    deferred_.Resolve(task_->Result(Env()));
  }

  // Like AsyncWorker's, but safe while the environment is being torn down (a worker thread
  // terminated while this call ran): JavaScript cannot run then, every Node-API call fails,
  // and the result is dropped instead of letting a C++ exception escape the libuv callback.
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status != napi_cancelled) {
      napi_handle_scope scope = nullptr;
      if (napi_open_handle_scope(env, &scope) == napi_ok) {
        try {
          if (failed_) {
            OnError(Napi::Error::New(env, message_.empty() ? "Expected enough memory to report a failure but allocation failed" : message_));
          } else {
            OnOK();
          }
        } catch (const std::exception&) {
          // Delivering failed (a Napi::Error, or a C++ allocation in Finish/Result): settle
          // the promise with an internal error if JavaScript can still run; if the
          // environment is going away there is no one to deliver to. Nothing may escape
          // this libuv callback.
          napi_value pending = nullptr;
          napi_get_and_clear_last_exception(env, &pending);
          try {
            Napi::Error err = Napi::Error::New(env, "Expected to deliver the result of an asynchronous call but could not");
            err.Set("code", Napi::String::New(env, sf::code::kInternal));
            deferred_.Reject(err.Value());
          } catch (...) {
            napi_get_and_clear_last_exception(env, &pending);
          }
        }
        napi_close_handle_scope(env, scope);
      }
    }
    Destroy();
  }

  void OnError(const Napi::Error& e) override {
    Napi::Object err = e.Value();
    err.Set("code", Napi::String::New(Env(), code_));
    deferred_.Reject(err);
  }

 private:
  // Called from Execute's handlers: must not throw, even when copying the message cannot
  // allocate (then the promise is rejected with the code and a fixed text).
  void Fail(const char* code, const std::string& message) noexcept {
    failed_ = true;
    code_ = code;
    try {
      message_ = message;
    } catch (...) {
      message_.clear();
    }
  }

  std::unique_ptr<Task> task_;
  Napi::Promise::Deferred deferred_;
  const char* code_ = sf::code::kInternal;
  bool failed_ = false;
  std::string message_;
};

}  // namespace

namespace {

bool IsDetachedView(Napi::Env env, const Napi::Value& v) {
  if (!v.IsTypedArray()) return false;
  bool detached = false;
  napi_is_detached_arraybuffer(env, v.As<Napi::TypedArray>().ArrayBuffer(), &detached);
  return detached;
}

}  // namespace

namespace {

// Whether a typed array's buffer is a SharedArrayBuffer (napi_is_arraybuffer is false for one).
bool IsSharedView(Napi::Env env, const Napi::Value& v) {
  napi_value buffer = nullptr;
  if (napi_get_typedarray_info(env, v, nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok) return false;
  bool is_ab = true;
  return napi_is_arraybuffer(env, buffer, &is_ab) == napi_ok && !is_ab;
}

// The current data pointer and length of a typed array (also for SharedArrayBuffer and
// resizable buffers, whose views' lengths change with them).
bool ViewNow(Napi::Env env, const Napi::Value& v, float** data, size_t* length) {
  void* p = nullptr;
  size_t n = 0;
  if (napi_get_typedarray_info(env, v, nullptr, &n, &p, nullptr, nullptr) != napi_ok) return false;
  *data = static_cast<float*>(p);
  *length = n;
  return true;
}

}  // namespace

float* Task::Stage(const Napi::Value& v, float* data, size_t n, bool write_back) {
  if (!async_ || data == nullptr) return data;
  Napi::Env env = v.Env();
  if (IsSharedView(env, v)) {  // cannot be detached or shrunk: used in place
    Keep(v);
    return data;
  }
  const size_t bytes = n * sizeof(float);
  try {
    sf::check_memory(staged_bytes_ + bytes, "the private copies of an asynchronous call's arrays");
  } catch (const sf::Error& e) {
    ThrowCoded(env, e.code(), e.what());
  }
  try {
    Staged s{Napi::Persistent(v.As<Napi::Object>()), Copy(), write_back};
    s.copy.data = static_cast<float*>(stage_alloc(bytes, &s.copy.bytes));
    s.copy.n = n;
    std::copy(data, data + n, s.copy.data);
    staged_.push_back(std::move(s));
  } catch (const std::bad_alloc&) {
    staged_.clear();  // this call's copies so far, back to the cache
    staged_bytes_ = 0;
    stage_trim();     // and the cache back to the system
    ThrowCoded(env, kErrMemory, "Expected enough memory for a private copy of an asynchronous call's array of " +
                                    std::to_string(bytes) + " bytes but allocation failed");
  }
  staged_bytes_ += bytes;
  return staged_.back().copy.data;
}

bool Task::Finish(Napi::Env env, std::string* message) {
  for (auto& s : staged_) {
    if (IsDetachedView(env, s.ref.Value())) {
      *message = "Expected the arrays of an asynchronous call to stay attached until it settles, but one was detached or transferred while the call ran; no result was written";
      return false;
    }
  }
  for (auto& r : refs_) {
    if (IsDetachedView(env, r.Value())) {
      *message = "Expected the arrays of an asynchronous call to stay attached until it settles, but one was detached or transferred while the call ran; its contents are unspecified";
      return false;
    }
  }
  for (auto& s : staged_) {
    if (!s.write_back) continue;
    float* dst = nullptr;
    size_t length = 0;
    if (!ViewNow(env, s.ref.Value(), &dst, &length) || length != s.copy.n) {
      *message = "Expected the output arrays of an asynchronous call to keep their length until it settles, but one was resized; no result was written to it";
      return false;
    }
  }
  for (auto& s : staged_) {
    if (!s.write_back) continue;
    float* dst = nullptr;
    size_t length = 0;
    ViewNow(env, s.ref.Value(), &dst, &length);
    std::copy(s.copy.data, s.copy.data + s.copy.n, dst);
  }
  return true;
}

Napi::Value Run(Napi::Env env, std::unique_ptr<Task> task) {
  if (task->async()) {
    auto* w = new Worker(env, std::move(task));
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }
  try {
    task->Execute(true);
  } catch (const sf::Error& e) {
    ThrowCoded(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    ThrowCoded(env, kErrMemory, "Expected enough memory for the working buffers but allocation failed");
  }
  return task->Result(env);
}

// One napi_get_typedarray_info call per argument: this runs on every call, and tiny calls
// are dominated by it.
static F32 ToF32(Napi::Env env, const Napi::Value& v, const char* name) {
  bool is_ta = false;
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, nullptr) != napi_ok ||
      type != napi_float32_array) {
    ThrowCoded(env, sf::code::kType, std::string("Expected a Float32Array for ") + name +
                                         " but received " + (is_ta ? "another typed array" : "something else"),
               true);
  }
  if (length == 0) {  // a detached buffer reads as empty
    bool detached = false;
    if (napi_is_detached_arraybuffer(env, buffer, &detached) == napi_ok && detached) {
      ThrowCoded(env, kErrDetached, std::string("Expected an attached buffer for ") + name +
                                        " but received a Float32Array whose ArrayBuffer is detached",
                 true);
    }
  }
  return F32{static_cast<float*>(data), length};
}

F32 ArgF32(const Napi::Value& v, const char* name, Task* keep) {
  F32 f = ToF32(v.Env(), v, name);
  if (keep) keep->Keep(v);
  return f;
}

F32 ArgF32(const Napi::Value& v, const char* name, size_t length, Task* keep) {
  F32 f = ArgF32(v, name, keep);
  if (f.length != length) {
    ThrowCoded(v.Env(), sf::code::kShape, std::string("Expected ") + std::to_string(length) + " elements for " + name +
                                              " but received " + std::to_string(f.length));
  }
  return f;
}

F32 ArgOptF32(const Napi::Value& v, const char* name, size_t length, Task* keep) {
  if (v.IsNull() || v.IsUndefined()) return F32{};
  return ArgF32(v, name, length, keep);
}

size_t Elements(const Napi::CallbackInfo& info, size_t B, size_t d) {
  try {
    return sf::checked_mul(B, d, "batch x dim");
  } catch (const sf::Error& e) {
    ThrowCoded(info.Env(), e.code(), e.what());
  }
}

double ArgNumber(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) {
    ThrowCoded(v.Env(), sf::code::kType, std::string("Expected a number for ") + name + " but received another type", true);
  }
  return v.As<Napi::Number>().DoubleValue();
}

size_t ArgSize(const Napi::Value& v, const char* name) {
  const double x = ArgNumber(v, name);
  if (!(x >= 0 && x <= 9007199254740991.0) || x != static_cast<double>(static_cast<uint64_t>(x))) {
    ThrowCoded(v.Env(), sf::code::kRange, std::string("Expected a non-negative safe integer for ") + name +
                                              " but received " + sf::num(x));
  }
  return static_cast<size_t>(x);
}

bool ArgBool(const Napi::Value& v, const char* name) {
  if (!v.IsBoolean()) {
    ThrowCoded(v.Env(), sf::code::kType, std::string("Expected a boolean for ") + name + " but received another type", true);
  }
  return v.As<Napi::Boolean>().Value();
}

Napi::Value Field(const Napi::Object& request, const char* key) {
  return request.Get(key);
}

Napi::Object ArgRequest(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject() || info[0].IsArray() || info[0].IsTypedArray() || info[0].IsFunction()) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a request object for request but received another value", true);
  }
  return info[0].As<Napi::Object>();
}

void CheckAlias(Napi::Env env, const char* out_name, const void* out, size_t n, std::initializer_list<Input> inputs) {
  if (!out || n == 0) return;
  const auto lo = reinterpret_cast<uintptr_t>(out), hi = lo + n * sizeof(float);
  for (const Input& in : inputs) {
    if (!in.data || in.length == 0) continue;
    const auto a = reinterpret_cast<uintptr_t>(in.data), b = a + in.length * sizeof(float);
    if (a >= hi || lo >= b) continue;  // disjoint
    if (in.elementwise && a == lo && b == hi) continue;  // in place
    ThrowCoded(env, kErrAlias,
               std::string("Expected ") + out_name + (in.elementwise ? " to be the same view as " : " not to overlap ") +
                   in.name + (in.elementwise ? " or not to overlap it" : "") + " for " + out_name +
                   " but received " + (in.elementwise ? "a partially overlapping view" : "an overlapping view"));
  }
}

void ArgAsync(const Napi::Value& v, Task* task) { task->SetAsync(ArgBool(v, "async")); }

sf::Coef ArgCoef(const Napi::Value& v, const char* name, size_t B, Task* keep) {
  sf::Coef c;
  if (v.IsNumber()) {
    c.value = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(c.value)) {
      ThrowCoded(v.Env(), sf::code::kRange, std::string("Expected a finite number for ") + name + " but received " + sf::num(c.value));
    }
    return c;
  }
  c.per = ArgF32(v, name, B, keep).data;
  return c;
}

namespace {

Napi::Value Capabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("simd", sf::simd_level());
  Napi::Array avail = Napi::Array::New(env);
  uint32_t k = 0;
  for (const std::string& s : sf::simd_available()) avail.Set(k++, s);
  o.Set("simdAvailable", avail);
  o.Set("threads", sf::ThreadPool::global().threads());
  o.Set("hardwareThreads", sf::ThreadPool::hardware_threads());
#if defined(__x86_64__) || defined(_M_X64)
  o.Set("arch", "x64");
#elif defined(__aarch64__) || defined(_M_ARM64)
  o.Set("arch", "arm64");
#else
  o.Set("arch", "other");
#endif
  o.Set("chunkElements", static_cast<double>(sf::kChunkElems));
  o.Set("memoryLimit", static_cast<double>(sf::memory_limit()));
  o.Set("bf16Screen", sf::dot_bf16_kernel() != nullptr);
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const size_t n = ArgSize(info[0], "threads");
  if (n < 1 || n > 1024) {
    ThrowCoded(info.Env(), sf::code::kRange, "Expected an integer from 1 to 1024 for threads but received " + std::to_string(n));
  }
  sf::ThreadPool::global().set_threads(static_cast<unsigned>(n));
  return info.Env().Undefined();
}

Napi::Value SetMemoryLimit(const Napi::CallbackInfo& info) {
  sf::set_memory_limit(ArgSize(info[0], "bytes"));
  return info.Env().Undefined();
}

Napi::Value SetSimdLevel(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a string for level but received another type", true);
  }
  try {
    sf::set_simd_level(info[0].As<Napi::String>().Utf8Value());
  } catch (const sf::Error& e) {
    ThrowCoded(info.Env(), e.code(), e.what());
  }
  return Napi::String::New(info.Env(), sf::simd_level());
}

// fpStatus(reset: boolean) -> { flushDenormals, denormal, underflow }: what pool chunks raised
// since the last reset (x86 MXCSR flags; always false elsewhere).
Napi::Value FpStatus(const Napi::CallbackInfo& info) {
  const unsigned f = sf::fp_flags_seen(info[0].ToBoolean().Value());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("flushDenormals", sf::flush_denormals());
  o.Set("denormal", (f & sf::kFpDenormalFlag) != 0);
  o.Set("underflow", (f & sf::kFpUnderflowFlag) != 0);
  return o;
}

Napi::Value SetFlushDenormals(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean()) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a boolean for on but received another type", true);
  }
  sf::set_flush_denormals(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

Napi::Value SetPruning(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean()) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a boolean for on but received another type", true);
  }
  const bool was = sf::pruning();
  sf::set_pruning(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(info.Env(), was);
}

Napi::Value SetScreening(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean()) {
    ThrowCoded(info.Env(), sf::code::kType, "Expected a boolean for on but received another type", true);
  }
  const bool was = sf::screening();
  sf::set_screening(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(info.Env(), was);
}

Napi::Value IsDetached(const Napi::CallbackInfo& info) {
  bool detached = false;
  if (info[0].IsTypedArray()) {
    napi_is_detached_arraybuffer(info.Env(), info[0].As<Napi::TypedArray>().ArrayBuffer(), &detached);
  } else if (info[0].IsArrayBuffer()) {
    napi_is_detached_arraybuffer(info.Env(), info[0], &detached);
  }
  return Napi::Boolean::New(info.Env(), detached);
}

// parseNpyHeader(bytes: Uint8Array) -> { descr, byteOrder, kind, itemSize, fortranOrder, shape,
// dataOffset, dataBytes }. Small and synchronous: only the header is read.
Napi::Value ParseNpyHeader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowCoded(env, sf::code::kType, "Expected a Uint8Array for bytes but received another type", true);
  }
  Napi::Uint8Array u8 = info[0].As<Napi::Uint8Array>();
  sf::NpyHeader h;
  try {
    h = sf::parse_npy_header(u8.Data(), u8.ElementLength());
  } catch (const sf::Error& e) {
    ThrowCoded(env, e.code(), e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", std::to_string(h.major) + "." + std::to_string(h.minor));
  o.Set("descr", h.descr);
  o.Set("byteOrder", std::string(1, h.byte_order));
  o.Set("kind", std::string(1, h.kind));
  o.Set("itemSize", static_cast<double>(h.item_size));
  o.Set("fortranOrder", h.fortran_order);
  Napi::Array shape = Napi::Array::New(env, h.shape.size());
  for (size_t i = 0; i < h.shape.size(); ++i) shape.Set(static_cast<uint32_t>(i), static_cast<double>(h.shape[i]));
  o.Set("shape", shape);
  o.Set("dataOffset", static_cast<double>(h.data_offset));
  o.Set("elements", static_cast<double>(h.elements));
  o.Set("dataBytes", static_cast<double>(h.data_bytes));
  return o;
}

}  // namespace

namespace {

// The native thread pool is process-wide and its threads never exit (they park between jobs).
// Node unloads an addon when the last environment that loaded it ends (a worker thread that
// loaded scorefield alone, then ended): the parked threads would then return into unmapped
// code. So the addon pins itself in memory on first load (RTLD_NODELETE): every later
// environment shares the one pool, and the pool's code stays mapped until the process exits.
void PinAddon() {
#if defined(__linux__) || defined(__APPLE__)
  static const bool pinned = [] {
    Dl_info self{};
    if (dladdr(reinterpret_cast<void*>(&PinAddon), &self) == 0 || self.dli_fname == nullptr) return false;
    return dlopen(self.dli_fname, RTLD_NOW | RTLD_NODELETE | RTLD_NOLOAD) != nullptr;
  }();
  (void)pinned;
#endif
}

// libuv starts its worker threads on the first piece of asynchronous work the process queues,
// and aborts the process when it cannot create them. Left to the first async call, that can
// come after the caller's large allocations have taken the room for the threads' stacks (a
// process under `ulimit -v` or a cgroup limit: then the first estimateAsync aborted instead
// of rejecting with ERR_SCOREFIELD_MEMORY). So the addon's first load queues one empty piece
// of work: the threads start while the process is small.
class StartLibuvThreads : public Napi::AsyncWorker {
 public:
  explicit StartLibuvThreads(Napi::Env env) : Napi::AsyncWorker(env, "scorefield:start") {}
  void Execute() override {}
};

void StartLibuvThreadsOnce(Napi::Env env) {
  static std::atomic<bool> started{false};
  if (started.exchange(true)) return;
  (new StartLibuvThreads(env))->Queue();  // deletes itself when done
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinAddon();
  StartLibuvThreadsOnce(env);
  exports.Set("capabilities", Napi::Function::New(env, Capabilities, "capabilities"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("setSimdLevel", Napi::Function::New(env, SetSimdLevel, "setSimdLevel"));
  exports.Set("setMemoryLimit", Napi::Function::New(env, SetMemoryLimit, "setMemoryLimit"));
  exports.Set("fpStatus", Napi::Function::New(env, FpStatus, "fpStatus"));
  exports.Set("setFlushDenormals", Napi::Function::New(env, SetFlushDenormals, "setFlushDenormals"));
  exports.Set("setPruning", Napi::Function::New(env, SetPruning, "setPruning"));
  exports.Set("setScreening", Napi::Function::New(env, SetScreening, "setScreening"));
  exports.Set("isDetached", Napi::Function::New(env, IsDetached, "isDetached"));
  exports.Set("parseNpyHeader", Napi::Function::New(env, ParseNpyHeader, "parseNpyHeader"));
  InitTargets(env, exports);
  InitEstimator(env, exports);
  InitSteps(env, exports);
  return exports;
}

}  // namespace sfb

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return sfb::Init(env, exports); }

NODE_API_MODULE(scorefield, InitModule)
