// SPDX-License-Identifier: GPL-2.0
// Helpers of the uvm library's suites: the devices by kind (through the
// library's own enumeration, of every provider), a reference FNV-1a, and
// matchers for uvm::error.
//
// The suites run wherever devices are: in the VM on hmmgpu devices, on a
// machine with an NVIDIA GPU on CUDA devices (build/tests/uvm-tests). Each
// parameterized suite runs on every device of every provider that fits
// it; a provider without any device gets a stand-in parameter
// ("cuda_absent") whose tests skip with the provider's reason. Checks of
// what only one provider has skip on the others, saying why
// (UVM_HMMGPU_ONLY, UVM_NEEDS_PAGEABLE). The platform helpers (mappings, module parameters, child
// processes) come from tests/vm/test_util.h.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "test_util.h"
#include "uvm/uvm.hpp"

namespace uvm::test {

using hmmgpu::test::kPage;
using hmmgpu::test::Mapping;

// The devices (of every provider) that can migrate, that run kernels, of
// one backend, of one provider.
std::vector<device_summary> migrate_devices();
std::vector<device_summary> compute_devices();
std::vector<device_summary> devices_of(backend b);
std::vector<device_summary> devices_of(provider p);
// The devices of `devs` of provider `p`.
std::vector<device_summary> only(std::vector<device_summary> devs, provider p);

// `devs` and a stand-in for each provider of `of` that has no device:
// the parameters of a suite that runs on every available provider.
std::vector<device_summary> or_absent(std::vector<device_summary> devs,
                                      const std::vector<provider>& of = {provider::hmmgpu,
                                                                         provider::cuda});
// Whether `s` is such a stand-in (its name is the reason).
bool is_absent(const device_summary& s);

// Free device memory a CUDA test wants before it runs (a small fraction
// of any card's; every test allocates a few MiB at most).
inline constexpr std::uint64_t kCudaFreeNeeded = std::uint64_t{256} << 20;

// FNV-1a 64 of n bytes, as the checksum kernel computes it.
std::uint64_t fnv1a(const void* p, std::size_t n);

// Runs fn and checks that it throws uvm::error with `code` and a what()
// containing each of `parts`.
::testing::AssertionResult throws_error(const std::function<void()>& fn, std::error_code code,
                                        const std::vector<std::string>& parts = {});

// A private mapping of a new temporary file holding `data` (already
// unlinked); its pages are page cache until written.
Mapping private_file_mapping(const std::vector<char>& data);

// `bytes` bytes from malloc, freed on destruction.
using malloc_ptr = std::unique_ptr<char, decltype(&std::free)>;
malloc_ptr malloc_bytes(std::size_t bytes);

// "0x7f..." as the library prints an address.
std::string hex(const void* p);

// A fixture parameterized by device: opens it (dev_) for each test; skips
// a stand-in of an absent provider, and a CUDA device short of memory.
class DeviceTest : public ::testing::TestWithParam<device_summary> {
 protected:
  void SetUp() override;
  void TearDown() override { dev_.reset(); }
  [[nodiscard]] device& dev() { return *dev_; }
  [[nodiscard]] bool is_cuda() const { return GetParam().provider() == provider::cuda; }
  // "hmmgpu0", "cuda0".
  [[nodiscard]] std::string dev_name() const { return to_string(GetParam().where()); }
  std::optional<device> dev_;
};

// Skips the test on a device that is not an hmmgpu device, saying why.
#define UVM_HMMGPU_ONLY(why)                                \
  do {                                                      \
    if (GetParam().provider() != ::uvm::provider::hmmgpu) { \
      GTEST_SKIP() << "hmmgpu only: " << (why);             \
    }                                                       \
  } while (false)

// Skips the test on a device without pageable memory access: it uses
// ordinary memory (malloc, mmap, the stack), which such a CUDA device
// refuses (CudaProvider.OrdinaryMemory checks that).
#define UVM_NEEDS_PAGEABLE()                                                             \
  do {                                                                                   \
    if (!dev().properties().pageable_memory_access) {                                    \
      GTEST_SKIP() << dev_name()                                                         \
                   << " has no pageable memory access (cudaDevAttrPageableMemoryAccess " \
                      "is 0): the test uses ordinary memory";                            \
    }                                                                                    \
  } while (false)

// Test-name suffix: "hmmgpu0_emu", "cuda0", "cuda_absent".
std::string param_name(const ::testing::TestParamInfo<device_summary>& p);

}  // namespace uvm::test

namespace uvm {
// How GoogleTest prints a device parameter.
void PrintTo(const device_summary& s, std::ostream* os);
}  // namespace uvm
