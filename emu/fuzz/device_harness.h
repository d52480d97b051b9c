// SPDX-License-Identifier: GPL-2.0
// The device fuzzer's harness: two detached GPUs (peers of each other) over guest RAM and VRAM
// that are exactly-sized heap buffers between poisoned guard zones, driven by one input
// (input.h) as a hostile guest would drive them, with the engines scheduled by the input on the
// calling thread. Any access outside guest RAM, VRAM or BAR2 is an AddressSanitizer report; the
// harness also checks the device's stores into BAR2 and the guard zones explicitly and aborts on
// a violation.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace hmmgpu::fuzz {

// One descriptor the device completed, as its ring slot reads right after.
struct Completion {
  uint32_t gpu = 0;
  uint32_t queue = 0;
  uint16_t opcode = 0;
  uint32_t status = 0;
  uint64_t arg5 = 0;
};

// What an input made the devices do (the seed checks in seeds.cpp use it).
struct Outcome {
  std::vector<Completion> completions;
  uint32_t fault_put = 0;      // GPU 0's FAULT_PUT at the end
  uint32_t fault_dropped = 0;  // and its FAULT_DROPPED
  uint64_t steps = 0;          // work done: descriptors and waves, and a step per MiB copied
};

// Runs one input; with `trace`, prints each action and completion on standard error.
Outcome run_device_input(std::span<const uint8_t> data, bool trace);

}  // namespace hmmgpu::fuzz
