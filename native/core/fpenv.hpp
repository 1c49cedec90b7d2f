// The floating-point environment of the compute threads.
//
// Subnormal numbers are slow on most CPUs (Intel cores take a microcode assist of about 100
// cycles for every instruction that reads or produces one), and scorefield's arithmetic never
// needs them: softmax weights below e^-f (f <= 40) of the running reference are flushed to exactly 0 by
// the kernels themselves (docs/numerics.md, "No subnormals"). As a second line of defence for
// data that holds subnormal values itself, every chunk of pool work runs with flush-to-zero
// and denormals-are-zero set (x86 MXCSR FTZ|DAZ, AArch64 FPCR.FZ), and the caller's setting is
// restored afterwards, so nothing leaks into the JavaScript thread that ran a chunk inline.
//
// FpScope also records which floating-point exception flags the chunk raised (x86: the
// denormal-operand and underflow flags), so tests can assert that no subnormal was ever
// produced or read. The flags are read once per chunk: a few cycles.
#pragma once
#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define SF_FPENV_X86 1
#endif

namespace sf {

// Flags observed on x86 (MXCSR bits); 0 elsewhere.
inline constexpr unsigned kFpDenormalFlag = 1u << 1;   // DE: a subnormal operand was read
inline constexpr unsigned kFpUnderflowFlag = 1u << 4;  // UE: a result was tiny (subnormal or flushed)

struct FpEnvState {
  std::atomic<bool> flush{true};     // set FTZ/DAZ for pool chunks
  std::atomic<unsigned> seen{0};     // exception flags raised by chunks since the last reset
};

inline FpEnvState& fp_env_state() {
  static FpEnvState s;
  return s;
}

// RAII: sets FTZ/DAZ (if enabled) and clears the exception flags for one chunk of work;
// restores the caller's control word and flags and records what the chunk raised.
class FpScope {
 public:
  FpScope() {
#if defined(SF_FPENV_X86)
    saved_ = _mm_getcsr();
    unsigned csr = saved_ & ~0x3Fu;                        // clear the sticky exception flags
    if (fp_env_state().flush.load(std::memory_order_relaxed)) csr |= 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
    _mm_setcsr(csr);
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    if (fp_env_state().flush.load(std::memory_order_relaxed)) {
      fpcr |= (uint64_t{1} << 24);  // FZ
      __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
    }
#endif
  }
  ~FpScope() {
#if defined(SF_FPENV_X86)
    const unsigned raised = _mm_getcsr() & 0x3Fu;
    if (raised & (kFpDenormalFlag | kFpUnderflowFlag)) fp_env_state().seen.fetch_or(raised, std::memory_order_relaxed);
    _mm_setcsr(saved_);
#elif defined(__aarch64__)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  FpScope(const FpScope&) = delete;
  FpScope& operator=(const FpScope&) = delete;

 private:
#if defined(SF_FPENV_X86)
  unsigned saved_ = 0;
#else
  uint64_t saved_ = 0;
#endif
};

// Tests and diagnostics: whether pool chunks run with FTZ/DAZ (default true), and the
// denormal/underflow flags chunks have raised since the last call with reset.
inline void set_flush_denormals(bool on) { fp_env_state().flush.store(on); }
inline bool flush_denormals() { return fp_env_state().flush.load(); }
inline unsigned fp_flags_seen(bool reset) {
  return reset ? fp_env_state().seen.exchange(0) : fp_env_state().seen.load();
}

}  // namespace sf
