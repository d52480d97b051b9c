// SPDX-License-Identifier: GPL-2.0
#include "harness.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace hmmgpu::bench {
namespace {

std::atomic<bool>& failed_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

}  // namespace

void Sample::phase(const std::string& name, const std::function<void()>& f, bool reported) {
  add_phase(name, timed(f), reported);
}

void Sample::add_phase(const std::string& name, double seconds, bool reported) {
  counters_[name + "_s"] = seconds;
  if (reported) {
    seconds_ += seconds;
  }
}

void record_failure(const std::string& what) {
  failed_flag().store(true);
  std::fprintf(stderr, "hmmgpu-bench: FAILED: %s\n", what.c_str());
}

bool failed() { return failed_flag().load(); }

benchmark::internal::Benchmark* register_measurement(const std::string& name, uint64_t bytes,
                                                     Body body) {
  auto run = [name, bytes, body = std::move(body)](benchmark::State& state) {
    std::map<std::string, double> sums;  // of each counter over the iterations
    for (auto _ : state) {
      Sample sample;
      try {
        body(sample);
      } catch (const std::exception& err) {
        record_failure(name + ": " + err.what());
        state.SkipWithError(err.what());
        break;
      }
      state.SetIterationTime(sample.seconds());
      for (const auto& [counter, value] : sample.counters()) {
        sums[counter] += value;
      }
    }
    if (!state.error_occurred()) {
      for (const auto& [counter, sum] : sums) {
        state.counters[counter] = benchmark::Counter(sum, benchmark::Counter::kAvgIterations);
      }
      state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
      state.counters["bytes"] = static_cast<double>(bytes);
      state.counters["verified"] = 1;
    }
  };
  return benchmark::RegisterBenchmark(name.c_str(), std::move(run))
      ->UseManualTime()
      ->ComputeStatistics("min", min_of);
}

void initialize(int* argc, char** argv, int repetitions, bool one_run) {
  // --reps=N: ours, taken out of argv here.
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    if (!arg.starts_with("--reps=")) {
      argv[kept++] = argv[i];
      continue;
    }
    char* end = nullptr;
    const long n = std::strtol(arg.c_str() + 7, &end, 10);
    if (*end != '\0' || n < 1 || n > 1000) {
      throw std::invalid_argument("--reps takes a number of repetitions, 1 to 1000");
    }
    repetitions = static_cast<int>(n);
  }
  *argc = kept;
  // Flags given first, so that the user's own (later) ones win.
  static std::vector<std::string> defaults;
  defaults = {"--benchmark_repetitions=" + std::to_string(repetitions),
              "--benchmark_report_aggregates_only=true",
              // One warm-up run of each measurement (min_warmup_time > 0 runs at least one).
              "--benchmark_min_warmup_time=1e-9",
              // Interleaved repetitions, so that slow drift of the machine hits every
              // measurement alike.
              "--benchmark_enable_random_interleaving=true"};
  if (one_run) {
    defaults.emplace_back("--benchmark_min_time=1e-9");  // one iteration per repetition
  }
  static std::vector<char*> args;
  args.assign(argv, argv + 1);
  for (std::string& flag : defaults) {
    args.push_back(flag.data());
  }
  args.insert(args.end(), argv + 1, argv + *argc);
  int count = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&count, args.data());
  // What Google Benchmark did not take is left for the caller, in argv.
  for (int i = 0; i < count; ++i) {
    argv[i] = args[static_cast<size_t>(i)];
  }
  *argc = count;
}

int run_benchmarks(const char* program, int argc, char** argv, int repetitions, bool one_run,
                   const std::function<void(int argc, char** argv)>& setup) {
  try {
    initialize(&argc, argv, repetitions, one_run);
    setup(argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
  } catch (const std::exception& err) {
    std::fprintf(stderr, "%s: %s\n", program, err.what());
    return 2;
  }
  return failed() ? 1 : 0;
}

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) {
      out.push_back(item);
    }
  }
  return out;
}

std::vector<double> positive_numbers(const std::string& name, const std::string& value) {
  std::vector<double> v;
  for (const std::string& item : split(value)) {
    char* end = nullptr;
    const double x = std::strtod(item.c_str(), &end);
    if (end == item.c_str() || *end != '\0' || !(x > 0)) {
      throw std::invalid_argument(name + " takes positive numbers, not \"" + item + "\"");
    }
    v.push_back(x);
  }
  if (v.empty()) {
    throw std::invalid_argument(name + " needs a value");
  }
  return v;
}

}  // namespace

Options parse_options(int argc, char** argv, Options defaults, const char* source) {
  Options o = std::move(defaults);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (name == "--groups") {
      const std::vector<std::string> groups = split(value);
      o.groups = std::set<std::string>(groups.begin(), groups.end());
    } else if (name == "--sizes") {
      o.sizes_mib = positive_numbers(name, value);
    } else if (name == "--fault-mib") {
      o.fault_mib = positive_numbers(name, value).front();
    } else if (name == "--compute-mib") {
      o.compute_mib = positive_numbers(name, value).front();
    } else if (name == "--oversub") {
      o.oversub = positive_numbers(name, value);
    } else {
      throw std::invalid_argument("unknown option " + arg + " (see the head of " + source + ")");
    }
  }
  return o;
}

}  // namespace hmmgpu::bench
