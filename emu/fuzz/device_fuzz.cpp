// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: one input is one guest's life with two hmmgpu devices (device_harness.h).
// HMMGPU_FUZZ_TRACE=1 in the environment prints what each input does (and the device's logs).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "device_harness.h"
#include "log.h"

namespace {
bool g_trace = false;  // NOLINT(*-avoid-non-const-global-variables): set once at start
}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_trace = std::getenv("HMMGPU_FUZZ_TRACE") != nullptr;
  hmmgpu::log::set_silent(!g_trace);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hmmgpu::fuzz::run_device_input(std::span<const uint8_t>(data, size), g_trace);
  return 0;
}
