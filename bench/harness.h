// SPDX-License-Identifier: GPL-2.0
// What both benchmark programs share on top of Google Benchmark: the defaults they run with (one
// warm-up run, repetitions, manual timing, a "min" aggregate for the best run), one measured run
// whose phases are timed separately, and failures that fail the program at its end.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace hmmgpu::bench {

// One repetition of a measurement: the time Google Benchmark reports (the sum of the phases that
// make it up) and named counters, the phases' seconds among them ("*_s", see phase()).
class Sample {
 public:
  // Times `f` as phase `name`: its seconds go into counter "<name>_s" and into the reported time
  // when `reported` is set.
  void phase(const std::string& name, const std::function<void()>& f, bool reported = true);
  // A phase timed elsewhere (e.g. one subtracted from another).
  void add_phase(const std::string& name, double seconds, bool reported);
  void set(const std::string& counter, double value) { counters_[counter] = value; }

  [[nodiscard]] double seconds() const { return seconds_; }
  [[nodiscard]] const std::map<std::string, double>& counters() const { return counters_; }

 private:
  double seconds_ = 0;
  std::map<std::string, double> counters_;
};

// The body of a measurement: fills one sample, throws std::exception when the run failed or its
// data is wrong.
using Body = std::function<void(Sample&)>;

// Registers measurement `name` moving `bytes` per run: one warm-up run, then one run per
// repetition, each timed by its body (manual time). A run that throws fails the benchmark
// (SkipWithError) and the program (failed()); a successful run sets counter "verified" to 1.
benchmark::internal::Benchmark* register_measurement(const std::string& name, uint64_t bytes,
                                                     Body body);

// Initializes Google Benchmark with this project's defaults before the user's flags (which win):
// `repetitions` repetitions (--reps=N overrides it), aggregates only, one warm-up run, and, when
// `one_run` is set, one iteration per repetition (each run is long and does its own checks).
// Leaves the arguments it did not take in argv; throws std::invalid_argument on a bad --reps.
void initialize(int* argc, char** argv, int repetitions, bool one_run);

// The main() of a benchmark program: initialize(), then `setup` with the arguments left (it
// registers the measurements; it throws std::exception on a bad argument or a missing device),
// then runs them. Returns the exit status: 0, 1 when a run failed, 2 on an error before.
int run_benchmarks(const char* program, int argc, char** argv, int repetitions, bool one_run,
                   const std::function<void(int argc, char** argv)>& setup);

// True once any run has failed: the program must exit non-zero.
[[nodiscard]] bool failed();
void record_failure(const std::string& what);

// The options both benchmark programs take, each --name=value:
//   --groups=a,b      the groups of measurements to run
//   --sizes=4,16      buffer sizes in MiB
//   --fault-mib=64    the buffer of the fault measurements, MiB
//   --compute-mib=64  the buffer of the compute measurements, MiB
//   --oversub=0.5,2   oversubscription factors (of the VRAM, or of free memory)
struct Options {
  std::set<std::string> groups;
  std::vector<double> sizes_mib = {4, 16, 64, 256};
  double fault_mib = 64;
  double compute_mib = 64;
  std::vector<double> oversub;
};

// Parses the arguments Google Benchmark left over `defaults`; throws std::invalid_argument naming
// the option at fault (and `source`, where the options are described) on an unknown option or a
// value that is not a list of positive numbers.
Options parse_options(int argc, char** argv, Options defaults, const char* source);

// Seconds since an arbitrary epoch, from the monotonic clock.
[[nodiscard]] inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The seconds `f` takes.
inline double timed(const std::function<void()>& f) {
  const double t0 = now();
  f();
  return now() - t0;
}

}  // namespace hmmgpu::bench
