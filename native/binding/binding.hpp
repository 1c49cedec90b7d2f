// The thin Node-API layer: argument checks JavaScript cannot do (detached buffers, size
// overflow), copying arguments into a plain Task, running it on the caller's thread or
// off the main thread, and turning core errors into JavaScript errors with codes.
//
// lib/ validates everything first and gives the user its messages; these checks are the
// last line of defence for anyone calling the binding directly.
#pragma once
#include <napi.h>

#include <memory>
#include <initializer_list>
#include <string>
#include <vector>

#include "errors.hpp"
#include "targets.hpp"

namespace sfb {

inline constexpr const char* kErrDetached = "ERR_SCOREFIELD_DETACHED";
inline constexpr const char* kErrAlias = "ERR_SCOREFIELD_ALIAS";
inline constexpr const char* kErrMemory = "ERR_SCOREFIELD_MEMORY";

// Throws a JavaScript Error (TypeError when type) with a code property.
[[noreturn]] void ThrowCoded(Napi::Env env, const char* code, const std::string& message, bool type = false);

// A unit of work with its arguments copied in. Execute() must not touch JavaScript; it may
// run on a libuv thread. Keep() holds a reference to every JavaScript object whose memory
// Execute() reads or writes, so garbage collection cannot free it while work is queued.
class Task {
 public:
  virtual ~Task() = default;
  virtual void Execute(bool inline_ok) = 0;
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }
  // Only asynchronous tasks need references: a synchronous one finishes before the call
  // returns, while its arguments are alive on the JavaScript stack.
  void Keep(const Napi::Value& v) {
    if (async_) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  void SetAsync(bool async) { async_ = async; }
  bool async() const { return async_; }

  // Asynchronous tasks work on private copies of every array they touch: Stage copies the
  // array argument in now (main thread) and returns the copy, and Finish copies outputs back
  // when the work is done. Whatever the caller does meanwhile (transfer the buffer, let it be
  // collected, shrink a resizable ArrayBuffer) the work never reads or writes memory it does
  // not own. Arrays backed by a SharedArrayBuffer, which can be neither detached nor shrunk,
  // are used in place (zero-copy), kept alive by a reference. The copies count against the
  // memory limit (ERR_SCOREFIELD_LIMIT) and a failed allocation is ERR_SCOREFIELD_MEMORY.
  // Synchronous tasks get `data` back unchanged. Call after the alias checks, which compare
  // the caller's pointers.
  float* Stage(const Napi::Value& v, float* data, size_t n, bool write_back);
  const float* StageIn(const Napi::Value& v, const float* data, size_t n) {
    return Stage(v, const_cast<float*>(data), n, false);
  }
  // A per-sample coefficient's array, if it has one.
  void StageCoef(const Napi::Value& v, sf::Coef& c, size_t B) {
    if (c.per) c.per = StageIn(v, c.per, B);
  }
  size_t staged_bytes() const { return staged_bytes_; }
  // On the main thread after Execute: copies staged outputs back into the caller's arrays.
  // Returns false (with a message) if any array the call referenced was detached meanwhile;
  // staged outputs are then left untouched.
  bool Finish(Napi::Env env, std::string* message);

 private:
  // A private copy's memory: large copies come from a process-wide cache of touched, huge-page
  // backed buffers (staging.cpp), so a call does not pay a page fault per 4 KiB every time.
  struct Copy {
    float* data = nullptr;
    size_t n = 0;      // elements
    size_t bytes = 0;  // capacity of the block (0: from the heap)
    Copy() = default;
    Copy(const Copy&) = delete;
    Copy& operator=(const Copy&) = delete;
    Copy(Copy&& o) noexcept : data(o.data), n(o.n), bytes(o.bytes) { o.data = nullptr; }
    ~Copy();
  };
  struct Staged {
    Napi::ObjectReference ref;
    Copy copy;
    bool write_back;
  };
  bool async_ = false;
  size_t staged_bytes_ = 0;
  std::vector<Napi::ObjectReference> refs_;
  std::vector<Staged> staged_;
};

// Runs the task now (sync) or queues it and returns a promise (task->async()).
Napi::Value Run(Napi::Env env, std::unique_ptr<Task> task);

// Arguments are read from values: a positional argument info[i], or a field of a request
// object (Field(request, "x")), the form the larger calls use (sharp's baton: lib/ reads
// and validates every option once, then hands the binding one plain object whose fields
// are read here by name).

// Reads the `async` flag into the task; call before reading arguments so that asynchronous
// tasks keep references to them.
void ArgAsync(const Napi::Value& v, Task* task);

// A Float32Array argument.
struct F32 {
  float* data = nullptr;
  size_t length = 0;
};

F32 ArgF32(const Napi::Value& v, const char* name, Task* keep);
// A Float32Array argument that must hold exactly `length` elements.
F32 ArgF32(const Napi::Value& v, const char* name, size_t length, Task* keep);
// Same, or null/undefined (returns data == nullptr).
F32 ArgOptF32(const Napi::Value& v, const char* name, size_t length, Task* keep);
// B * d elements, or a coded ERR_SCOREFIELD_OVERFLOW.
size_t Elements(const Napi::CallbackInfo& info, size_t B, size_t d);
// A non-negative integer no larger than 2^53 - 1.
size_t ArgSize(const Napi::Value& v, const char* name);
double ArgNumber(const Napi::Value& v, const char* name);
bool ArgBool(const Napi::Value& v, const char* name);
// A finite number, or a Float32Array of length B (one value per sample).
sf::Coef ArgCoef(const Napi::Value& v, const char* name, size_t B, Task* keep);
// The request object of a call (argument 0), and one of its fields.
Napi::Object ArgRequest(const Napi::CallbackInfo& info);
Napi::Value Field(const Napi::Object& request, const char* key);

// An array a call reads while it writes `out`.
struct Input {
  const char* name;
  const void* data;
  size_t length;  // elements (float32)
  bool elementwise;  // read at the same index it writes: exact aliasing is allowed
};

// Throws ERR_SCOREFIELD_ALIAS when out partially overlaps an elementwise input (exact
// aliasing is allowed: computing in place) or overlaps any other input at all.
void CheckAlias(Napi::Env env, const char* out_name, const void* out, size_t n, std::initializer_list<Input> inputs);

// Staging memory (staging.cpp): a block of at least `bytes`, and its return. Blocks of 1 MiB and
// more are mmap'ed in 2 MiB huge-page units and, when returned, kept for reuse (blocks up to
// 64 MiB, kStagingCacheBytes in all); smaller ones come from the heap. stage_alloc throws
// std::bad_alloc when the memory cannot be had.
inline constexpr size_t kStagingCacheBytes = size_t{256} << 20;
void* stage_alloc(size_t bytes, size_t* block_bytes);
void stage_free(void* p, size_t block_bytes);
// Unmaps every cached block (after an allocation failed).
void stage_trim();

void InitTargets(Napi::Env env, Napi::Object exports);
void InitEstimator(Napi::Env env, Napi::Object exports);
void InitSteps(Napi::Env env, Napi::Object exports);

}  // namespace sfb
