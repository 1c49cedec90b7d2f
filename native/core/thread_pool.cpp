#include "thread_pool.hpp"

#include <cstdlib>
#include <exception>
#include <string>

#include "fpenv.hpp"

#if defined(__linux__)
#include <sched.h>
#endif

namespace sf {

struct ThreadPool::Job {
  const std::function<void(size_t)>* fn = nullptr;
  size_t n = 0;
  size_t next = 0;  // next unclaimed chunk, guarded by the pool mutex
  // Completion, guarded by m: the waiter frees the Job as soon as it sees done == n, so a
  // worker touches the job only while holding m.
  std::mutex m;
  std::condition_variable cv;
  size_t done = 0;
  std::exception_ptr error;
};

ThreadPool& ThreadPool::global() {
  // Never destroyed: workers may still be parked when the process exits.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

ThreadPool::ThreadPool() = default;

unsigned ThreadPool::hardware_threads() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int c = CPU_COUNT(&set);
    if (c > 0) return static_cast<unsigned>(c);
  }
#endif
  unsigned h = std::thread::hardware_concurrency();
  return h ? h : 1;
}

void ThreadPool::ensure_started() {
  if (started_.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> g(resize_mu_);
  if (started_.load(std::memory_order_relaxed)) return;
  unsigned n = hardware_threads();
  if (const char* env = std::getenv("SCOREFIELD_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= 1024) n = static_cast<unsigned>(v);
  }
  std::lock_guard<std::mutex> lk(mu_);
  target_ = n;
  for (unsigned i = 0; i < n; ++i) workers_.emplace_back(&ThreadPool::worker_loop, this, i);
  started_.store(true, std::memory_order_release);
}

unsigned ThreadPool::threads() {
  ensure_started();
  return target_.load();
}

void ThreadPool::set_threads(unsigned n) {
  if (n < 1) n = 1;
  ensure_started();
  std::lock_guard<std::mutex> g(resize_mu_);
  std::vector<std::thread> retired;
  {
    std::lock_guard<std::mutex> lk(mu_);
    target_ = n;
    while (workers_.size() > n) {
      retired.push_back(std::move(workers_.back()));
      workers_.pop_back();
    }
    for (unsigned i = static_cast<unsigned>(workers_.size()); i < n; ++i) {
      workers_.emplace_back(&ThreadPool::worker_loop, this, i);
    }
  }
  cv_.notify_all();
  for (std::thread& t : retired) t.join();
}

void ThreadPool::worker_loop(unsigned id) {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return id >= target_ || !queue_.empty(); });
    if (id >= target_) return;
    Job* job = queue_.front();
    const size_t i = job->next++;
    if (job->next >= job->n) queue_.pop_front();  // every chunk is claimed
    lk.unlock();

    std::exception_ptr err;
    try {
      FpScope fp;
      (*job->fn)(i);
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> g(job->m);
      if (err && !job->error) job->error = err;
      if (++job->done == job->n) job->cv.notify_one();
    }
    lk.lock();
  }
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t)>& fn, bool inline_ok) {
  if (n == 0) return;
  ensure_started();
  if (inline_ok && (n == 1 || target_.load(std::memory_order_relaxed) == 1)) {
    for (size_t i = 0; i < n; ++i) {
      FpScope fp;  // the caller's FP environment is restored after each chunk
      fn(i);
    }
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(&job);
  }
  if (n == 1) {
    cv_.notify_one();
  } else {
    cv_.notify_all();
  }
  std::unique_lock<std::mutex> g(job.m);
  job.cv.wait(g, [&] { return job.done == job.n; });
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace sf
