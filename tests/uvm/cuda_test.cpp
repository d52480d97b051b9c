// SPDX-License-Identifier: GPL-2.0
//
// uvm library, on CUDA devices only: what the CUDA provider does
// differently — managed memory from cudaMallocManaged, ordinary memory
// accepted only with pageable memory access, read-mostly advice, the last
// prefetch location as residency, counters CUDA does not expose, kernel
// results bit for bit (an ordered float sum, no fused multiply-add).
// Without a CUDA device every test skips, saying why.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "uvm_test.h"

namespace uvm::test {
namespace {

class CudaProvider : public DeviceTest {};

// CUDA exposes none of the counters: counters() reads zero, and the
// properties say that each field is unavailable.
TEST_P(CudaProvider, NoCounters) {
  const device_properties& p = dev().properties();
  EXPECT_EQ(p.backend, backend::cuda);
  EXPECT_EQ(p.unavailable_counters.size(), 24U);
  for (const char* name : {"to_device_pages", "device_faults", "evicted_pages", "channel_busy"}) {
    EXPECT_FALSE(p.reports(name)) << name;
  }
  managed_vector<std::uint32_t> v(16 * kPage / 4, 1);
  (void)prefetch(v, dev());
  const device_counters c = dev().counters();
  EXPECT_EQ(c.to_device_pages, 0U);
  EXPECT_EQ(c.device_faults, 0U);
  EXPECT_TRUE(c.channel_busy.empty());
}

// Managed memory works whatever the device's pageable memory access:
// prefetched both ways, computed on, read back on the CPU.
TEST_P(CudaProvider, ManagedMemory) {
  stream s(dev());
  const std::size_t n = 64 * kPage / 4;
  managed_vector<std::uint32_t> v(n, 5);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v.data()) % kPage, 0U);
  EXPECT_EQ(prefetch(v, dev(), s).get().failed(), 0U);
  increment(v, 3, s);
  auto c = checksum(v, s);
  EXPECT_EQ(prefetch(v, cpu, s).get().failed(), 0U);
  s.synchronize();
  for (std::size_t i = 0; i < n; i++) {
    ASSERT_EQ(v[i], 8U) << i;
  }
  EXPECT_EQ(c.get(), fnv1a(v.data(), n * 4));
}

// Ordinary memory: accepted with pageable memory access (HMM), refused
// otherwise with not_supported, saying why, before CUDA sees it (a kernel
// fails at synchronize, and the stream works again).
TEST_P(CudaProvider, OrdinaryMemory) {
  std::vector<std::uint32_t> v(16 * kPage / 4, 2);
  stream s(dev());
  if (dev().properties().pageable_memory_access) {
    EXPECT_EQ(prefetch(v, dev()).failed(), 0U);
    increment(v, 1, s).get();
    EXPECT_EQ(v[100], 3U);
    return;
  }
  const std::vector<std::string> why = {dev_name(), "cudaDevAttrPageableMemoryAccess",
                                        "uvm::managed_vector"};
  EXPECT_TRUE(throws_error([&] { (void)prefetch(v, dev()); }, errc::not_supported, why));
  EXPECT_TRUE(
      throws_error([&] { advise(v, advice::preferred_location, dev()); }, errc::not_supported));
  auto f = increment(v, 1, s);
  EXPECT_TRUE(throws_error([&] { s.synchronize(); }, errc::not_supported, why));
  EXPECT_THROW(f.get(), error);
  EXPECT_EQ(v[100], 2U);
  managed_vector<std::uint32_t> m(16, 1);
  increment(m, 1, s).get();
  EXPECT_EQ(m[0], 2U);
  EXPECT_EQ(dev().state(), device_state::ready);
}

// Read-mostly advice (which hmmgpu refuses) is set, read back and unset.
TEST_P(CudaProvider, ReadMostly) {
  managed_vector<float> v(8 * kPage / 4, 1.0F);
  advise(v, advice::read_mostly, dev());
  EXPECT_TRUE(range_attributes(v).read_mostly);
  stream s(dev());
  EXPECT_EQ(sum(std::span<const float>(v), s).get(), static_cast<double>(v.size()));
  advise(v, advice::unset_read_mostly, dev());
  EXPECT_FALSE(range_attributes(v).read_mostly);
  EXPECT_TRUE(throws_error([&] { advise(v, advice::accessed_by, cpu); }, errc::not_supported,
                           {"only a device"}));
}

// Residency reports where pages were last prefetched to; never-prefetched
// pages have no location.
TEST_P(CudaProvider, LastPrefetchLocation) {
  managed_vector<char> v(8 * kPage, 'x');
  EXPECT_EQ(summarize(residency(v, dev())).unpopulated, 8U);
  (void)prefetch({v.data(), 4 * kPage}, dev());
  residency_summary s = summarize(residency(v, dev()));
  EXPECT_EQ(s.at(dev()), 4U);
  EXPECT_EQ(s.unpopulated, 4U);
  EXPECT_EQ(s.at(location::of_device(dev().index())), 0U);  // hmmgpuN is another device
  (void)prefetch(v, cpu);
  s = summarize(residency(v, dev()));
  EXPECT_EQ(s.cpu, 8U);
  const prefetch_result again = prefetch(v, cpu);
  EXPECT_EQ(again.resident, 8U);
  for (const auto& run : residency(v, dev())) {
    EXPECT_EQ(run.mapping, device_mapping::none);
  }
}

// The float sum adds in ascending order in binary64, as hmmgpu's: 2^60
// followed by ones stays 2^60 (a tree reduction would not).
TEST_P(CudaProvider, OrderedFloatSum) {
  managed_vector<float> v(4097, 1.0F);
  v[0] = std::ldexp(1.0F, 60);
  stream s(dev());
  EXPECT_EQ(sum(std::span<const float>(v), s).get(), std::ldexp(1.0, 60));
  v[0] = 1.0F;
  v[4096] = std::ldexp(1.0F, 60);
  EXPECT_EQ(sum(std::span<const float>(v), s).get(), std::ldexp(1.0, 60) + 4096.0);
}

// axpy and scale round each operation (no fused multiply-add): bit for
// bit the CPU's binary32 results.
TEST_P(CudaProvider, NoFusedMultiplyAdd) {
  const std::size_t n = 1 << 16;
  managed_vector<float> x(n);
  managed_vector<float> y(n);
  std::vector<float> want(n);
  const float a = 1.0F / 3.0F;
  for (std::size_t i = 0; i < n; i++) {
    x[i] = 1.0F + static_cast<float>(i) * 1e-3F;
    y[i] = -static_cast<float>(i) * 3.3e-4F;
    volatile float prod = a * x[i];  // rounded, as the device must
    want[i] = (prod + y[i]) * 0.75F;
  }
  stream s(dev());
  axpy(a, x, y, s);
  scale(0.75F, y, s);
  s.synchronize();
  for (std::size_t i = 0; i < n; i++) {
    ASSERT_EQ(std::memcmp(&y[i], &want[i], sizeof(float)), 0)
        << i << ": " << y[i] << " vs " << want[i];
  }
}

INSTANTIATE_TEST_SUITE_P(All, CudaProvider,
                         ::testing::ValuesIn(or_absent(devices_of(provider::cuda),
                                                       {provider::cuda})),
                         param_name);

}  // namespace
}  // namespace uvm::test
