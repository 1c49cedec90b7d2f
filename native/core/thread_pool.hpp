// One process-wide pool of compute threads shared by every call.
//
// parallel_for(n, fn) runs fn(0..n-1) on the pool's workers and returns when all are
// done. Callers (the JavaScript main thread for sync calls, libuv threads for async ones)
// wait instead of computing, so the number of threads doing arithmetic never exceeds
// threads(), however many calls are in flight: jobs queue in FIFO order.
//
// Work must be split into chunks whose boundaries depend on the problem only, never on
// the thread count; then results are identical for every thread count.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sf {

class ThreadPool {
 public:
  static ThreadPool& global();

  // Sets the number of worker threads (>= 1). Blocks until surplus workers have finished
  // the chunk they are running.
  void set_threads(unsigned n);
  unsigned threads();

  // Runs fn(i) for i in [0, n). When inline_ok and the job is a single chunk (or the pool
  // has one thread) the caller runs it itself, which avoids a thread hand-off for small
  // synchronous work. The first exception thrown by a chunk is rethrown here after every
  // chunk has finished or been skipped.
  void parallel_for(size_t n, const std::function<void(size_t)>& fn, bool inline_ok);

  // Threads the machine offers this process (affinity mask aware), at least 1.
  static unsigned hardware_threads();

 private:
  struct Job;
  ThreadPool();
  void ensure_started();
  void worker_loop(unsigned id);

  std::mutex resize_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  std::vector<std::thread> workers_;
  std::atomic<unsigned> target_{0};  // written under mu_, read without it on the fast path
  std::atomic<bool> started_{false};
};

}  // namespace sf
