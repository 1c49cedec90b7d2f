// Cache-line aligned std::vector storage, for arrays that kernels load whole SIMD vectors
// from: a vector load that straddles two cache lines costs two accesses.
#pragma once
#include <cstddef>
#include <new>
#include <vector>

namespace sf {

template <class T>
struct LineAligned {
  using value_type = T;
  LineAligned() = default;
  template <class U>
  LineAligned(const LineAligned<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const LineAligned<U>&) const { return true; }
  template <class U>
  bool operator!=(const LineAligned<U>&) const { return false; }
};

template <class T>
using AlignedVec = std::vector<T, LineAligned<T>>;

// An uninitialised cache-line aligned array of n T (trivial T).
template <class T>
class AlignedArray {
 public:
  explicit AlignedArray(size_t n) : p_(LineAligned<T>().allocate(n)) {}
  ~AlignedArray() { LineAligned<T>().deallocate(p_, 0); }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  T* get() const { return p_; }

 private:
  T* p_;
};

}  // namespace sf
