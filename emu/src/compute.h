// SPDX-License-Identifier: GPL-2.0
// The kernels of OP_LAUNCH (SPEC 4.7): what each one reads and writes, and its arithmetic over a
// run of elements that lie inside one page of every operand.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hmmgpu {

struct KernelInfo {
  uint32_t id = 0;
  const char* name = "";
  uint64_t size = 1;        // element size and alignment
  bool has_y = false;       // reads operand y (va1)
  bool has_scalar = false;  // uses bits 31..0 of ARG4
  bool writes_x = false;
};

// The kernel with this id, or nullptr when the SPEC defines none.
[[nodiscard]] const KernelInfo* find_kernel(uint32_t id);

// What a launch accumulates across its waves.
struct KernelAccumulator {
  double sum_f64 = 0.0;  // SUM_F32
  uint64_t value = 0;    // SUM_U64 sum, CHECKSUM hash
};

// The first value of the accumulator (CHECKSUM starts from the FNV offset basis).
[[nodiscard]] KernelAccumulator kernel_start(const KernelInfo& kernel);
// The launch's ARG5 on ST_OK.
[[nodiscard]] uint64_t kernel_result(const KernelInfo& kernel, const KernelAccumulator& acc);

// Performs `n` elements: x and y are host addresses of the first element of each operand (y is
// null without operand y); elements in ascending order, each read and written before the next is
// read, so aliasing operands give the sequential result.
void run_kernel(const KernelInfo& kernel, std::byte* x, const std::byte* y, uint64_t n,
                uint32_t scalar, KernelAccumulator& acc);

}  // namespace hmmgpu
