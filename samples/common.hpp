// SPDX-License-Identifier: GPL-2.0
//
// What every sample shares, written against the public uvm API only, like
// the samples themselves: finding devices that run kernels, reading a
// size from the command line, printing the counters that moved, and the
// exit statuses.
//
// Exit statuses of every sample:
//   0   the result was verified
//   1   a wrong result, or an error (the message says which)
//   2   bad arguments (the usage is printed)
//   77  skipped: the machine lacks the devices the sample needs (the
//       message says what it needs); the Automake convention, which ctest's
//       SKIP_RETURN_CODE understands
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <uvm/uvm.hpp>
#include <vector>

namespace samples {

inline constexpr int kExitWrong = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSkip = 77;

// Thrown to skip: the machine lacks what the sample needs.
class skip : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown for bad arguments: main() prints the usage.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Runs `body` with the arguments after the program name and maps what it
// throws to the exit statuses above, printing the message prefixed with
// `name`. "-h" or "--help" prints `usage` and exits 0.
int run(const char* name, const char* usage, int argc, char** argv,
        const std::function<int(std::span<char* const> args)>& body);

// Opens every device that runs kernels (capability::compute), in order,
// of one provider: hmmgpu's when it has one, else CUDA's (a process using
// both would get managed memory that only hmmgpu devices are sure to use).
// @throws skip when there are fewer than `at_least`.
std::vector<uvm::device> open_compute_devices(std::size_t at_least = 1);

// Whether `dev` reports its counters (a CUDA device reports none).
bool has_counters(const uvm::device& dev);

// args[i] as a count with an optional K, M or G suffix (powers of 1024),
// at least `min`; `fallback` when there is no args[i].
// @throws usage_error when it is not such a number.
std::size_t size_arg(std::span<char* const> args, std::size_t i, std::size_t fallback,
                     std::size_t min = 1);

// "4.0 MiB", "512 B".
std::string bytes(std::uint64_t n);

// Milliseconds, for printing.
double ms(std::chrono::nanoseconds t);

// The time every copy channel of a reading was busy, added up.
std::chrono::nanoseconds copy_engine_time(const uvm::device_counters& c);

// Prints the counters of `dev` that moved in `delta` (a later reading
// minus an earlier one), one per line under a heading, by their names in
// uvm::device_counters, with the copy engine's busy time last; and the
// names of those the device does not report.
void print_counters(const uvm::device& dev, const uvm::device_counters& delta);

}  // namespace samples
