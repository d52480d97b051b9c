// SPDX-License-Identifier: GPL-2.0
// Helpers of the uvm library's VM suites: the devices by kind (through the
// library's own enumeration), a reference FNV-1a, and matchers for
// uvm::error. The platform helpers (mappings, module parameters, child
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

// The devices that can migrate, that run kernels, and of one backend.
std::vector<device_summary> migrate_devices();
std::vector<device_summary> compute_devices();
std::vector<device_summary> devices_of(backend b);

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

// A fixture parameterized by device: opens it (dev_) for each test.
class DeviceTest : public ::testing::TestWithParam<device_summary> {
 protected:
  void SetUp() override { dev_.emplace(GetParam().index); }
  void TearDown() override { dev_.reset(); }
  [[nodiscard]] device& dev() { return *dev_; }
  std::optional<device> dev_;
};

// Test-name suffix: "hmmgpu0_emu".
std::string param_name(const ::testing::TestParamInfo<device_summary>& p);

}  // namespace uvm::test

namespace uvm {
// How GoogleTest prints a device parameter.
void PrintTo(const device_summary& s, std::ostream* os);
}  // namespace uvm
