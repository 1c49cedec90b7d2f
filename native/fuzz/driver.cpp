// A stand-in for libFuzzer's main when the compiler has no -fsanitize=fuzzer (GCC): replays
// every file given (or every file in a directory given), then runs random mutations of them
// for -max_total_time=N seconds with a fixed seed. Built with ASan+UBSan it finds the same
// class of bugs, only without coverage guidance.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<std::vector<uint8_t>> corpus;
  double seconds = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("-max_total_time=", 0) == 0) {
      seconds = std::stod(a.substr(16));
      continue;
    }
    if (a[0] == '-') continue;  // other libFuzzer flags are accepted and ignored
    std::vector<fs::path> files;
    if (fs::is_directory(a)) {
      for (const auto& e : fs::directory_iterator(a))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::exists(a)) {
      files.push_back(a);
    }
    for (const auto& f : files) {
      std::ifstream s(f, std::ios::binary);
      corpus.emplace_back(std::istreambuf_iterator<char>(s), std::istreambuf_iterator<char>());
    }
  }
  for (const auto& c : corpus) LLVMFuzzerTestOneInput(c.data(), c.size());
  std::printf("replayed %zu inputs\n", corpus.size());
  if (corpus.empty()) corpus.push_back({});
  std::mt19937_64 rng(20261122);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  size_t runs = 0;
  while (std::chrono::steady_clock::now() < end) {
    std::vector<uint8_t> x = corpus[rng() % corpus.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:
          if (!x.empty()) x[rng() % x.size()] = static_cast<uint8_t>(rng());
          break;
        case 1:
          x.insert(x.begin() + static_cast<std::ptrdiff_t>(x.empty() ? 0 : rng() % (x.size() + 1)), static_cast<uint8_t>(rng()));
          break;
        case 2:
          if (!x.empty()) x.erase(x.begin() + static_cast<std::ptrdiff_t>(rng() % x.size()));
          break;
        default:
          if (!x.empty()) x.resize(rng() % (x.size() + 1));
          break;
      }
    }
    LLVMFuzzerTestOneInput(x.data(), x.size());
    ++runs;
  }
  std::printf("Done %zu runs in %.0f second(s)\n", runs, seconds);
  return 0;
}
