// SPDX-License-Identifier: GPL-2.0
//
// uvm library, on every provider's devices: managed memory (allocator with std::vector,
// std::deque and std::pmr, make_managed, advice of a resource) and
// ordinary memory (malloc, new, std::vector, a private file mapping) moved
// and computed on by the devices, the data checked on the CPU.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

#include "uvm_test.h"

namespace uvm::test {
namespace {

// Pages of `r` at location `l`, as the device `observer` reports them.
std::size_t pages_at(memory_range r, location l, const device& observer) {
  return summarize(residency(r, observer)).at(l);
}

class Memory : public DeviceTest {};

// A managed_vector moves to the device and back whole, its values intact.
TEST_P(Memory, ManagedVectorRoundTrip) {
  managed_vector<std::uint64_t> v(100 * kPage / 8);
  for (std::size_t i = 0; i < v.size(); i++) {
    v[i] = i * 7;
  }
  const prefetch_result to = prefetch(v, dev());
  EXPECT_EQ(to.pages, 100U);
  EXPECT_EQ(to.migrated, 100U);
  EXPECT_EQ(to.failed(), 0U);
  EXPECT_EQ(pages_at(v, dev(), dev()), 100U);
  const prefetch_result back = prefetch(v, cpu);
  EXPECT_EQ(back.migrated, 100U);
  EXPECT_EQ(pages_at(v, cpu, dev()), 100U);
  for (std::size_t i = 0; i < v.size(); i++) {
    ASSERT_EQ(v[i], i * 7) << i;
  }
}

// The blocks of a std::deque with the managed allocator each move to the
// device (whole pages of their own) and their elements survive.
TEST_P(Memory, DequeBlocksMove) {
  std::deque<std::uint32_t, managed_allocator<std::uint32_t>> d;
  for (std::uint32_t i = 0; i < 20000; i++) {
    d.push_back(i ^ 0x5a5a5a5aU);
  }
  std::size_t moved = 0;
  for (std::size_t i = 0; i < d.size(); i += 128) {  // deque blocks of 512 bytes
    moved += prefetch({&d[i], sizeof(std::uint32_t)}, dev()).migrated;
  }
  EXPECT_GT(moved, 0U);
  EXPECT_EQ(pages_at({&d[0], 4}, dev(), dev()), 1U);
  for (std::uint32_t i = 0; i < 20000; i++) {
    ASSERT_EQ(d[i], i ^ 0x5a5a5a5aU) << i;
  }
}

// A std::pmr::vector on a managed_resource moves like any other memory.
TEST_P(Memory, PmrVector) {
  managed_resource r;
  std::pmr::vector<double> v(&r);
  v.assign(8 * kPage / sizeof(double), 2.5);
  EXPECT_EQ(prefetch(v, dev()).migrated, 8U);
  EXPECT_EQ(v.back(), 2.5);
}

// make_managed arrays are zeroed and move whole.
TEST_P(Memory, MakeManaged) {
  const std::size_t n = 10 * kPage / 4;
  auto a = make_managed<std::uint32_t[]>(n);  // NOLINT(*-avoid-c-arrays)
  EXPECT_EQ(prefetch({a.get(), n * 4}, dev()).migrated, 10U);
  for (std::size_t i = 0; i < n; i++) {
    ASSERT_EQ(a[i], 0U);
  }
}

// malloc'd memory: unaligned, sharing pages with the allocator's data —
// the overlapping pages move, and the data (ours and the neighbours') is
// intact. (Where the pages are afterwards is not checked: any heap use by
// the CPU, the test's own included, brings a shared page back.)
TEST_P(Memory, MallocMemory) {
  UVM_NEEDS_PAGEABLE();
  const std::size_t bytes = 5 * kPage + 123;
  const malloc_ptr p = malloc_bytes(bytes);
  ASSERT_NE(p, nullptr);
  for (std::size_t i = 0; i < bytes; i++) {
    p.get()[i] = static_cast<char>(i * 13);
  }
  const memory_range r(p.get(), bytes);
  const prefetch_result res = prefetch(r, dev());
  EXPECT_EQ(res.pages, r.page_count());
  EXPECT_EQ(res.migrated + res.resident, r.page_count());
  for (std::size_t i = 0; i < bytes; i++) {
    ASSERT_EQ(p.get()[i], static_cast<char>(i * 13)) << i;
  }
}

// Memory from new[] and an ordinary std::vector moves too (heap memory,
// like malloc's).
TEST_P(Memory, NewAndVectorMemory) {
  UVM_NEEDS_PAGEABLE();
  auto arr = std::make_unique<std::uint64_t[]>(4 * kPage / 8);  // NOLINT(*-avoid-c-arrays)
  for (std::size_t i = 0; i < 4 * kPage / 8; i++) {
    arr[i] = ~i;
  }
  const memory_range r(arr.get(), 4 * kPage);
  const prefetch_result ra = prefetch(r, dev());
  EXPECT_EQ(ra.migrated + ra.resident, r.page_count());
  EXPECT_GE(ra.migrated, 3U);
  std::vector<int> v(3 * kPage / sizeof(int), -1);
  const prefetch_result rv = prefetch(v, dev());
  EXPECT_EQ(rv.migrated + rv.resident, memory_range(v).page_count());
  EXPECT_GE(rv.migrated, 2U);
  EXPECT_EQ(prefetch(v, cpu).failed(), 0U);
  EXPECT_EQ(v[42], -1);
  for (std::size_t i = 0; i < 4 * kPage / 8; i++) {
    ASSERT_EQ(arr[i], ~i);
  }
}

// A private file mapping: pages not yet written are page cache and stay
// (counted as file_backed); written pages move; the file is unchanged.
TEST_P(Memory, PrivateFileMapping) {
  UVM_HMMGPU_ONLY("CUDA reports no per-page outcome of a prefetch");
  std::vector<char> data(8 * kPage);
  for (std::size_t i = 0; i < data.size(); i++) {
    data[i] = static_cast<char>(i % 251);
  }
  const Mapping m = private_file_mapping(data);
  ASSERT_NE(m.get(), nullptr);
  const memory_range all(m.get(), m.size());
  EXPECT_EQ(std::memcmp(m.get(), data.data(), data.size()), 0);  // read: page cache
  const prefetch_result first = prefetch(all, dev());
  EXPECT_EQ(first.file_backed, 8U);
  EXPECT_EQ(first.failed(), 8U);
  for (std::size_t pg = 0; pg < 4; pg++) {
    m.get()[pg * kPage] = 'w';  // private copies
  }
  const prefetch_result second = prefetch(all, dev());
  EXPECT_EQ(second.migrated, 4U);
  EXPECT_EQ(second.file_backed, 4U);
  EXPECT_EQ(pages_at(all, dev(), dev()), 4U);
  for (std::size_t i = 0; i < data.size(); i++) {
    const char want = (i % kPage == 0 && i < 4 * kPage) ? 'w' : data[i];
    ASSERT_EQ(m.get()[i], want) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(All, Memory, ::testing::ValuesIn(or_absent(migrate_devices())),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Memory);

class ComputeMemory : public DeviceTest {};

// Kernels run on every kind of memory: managed_vector, deque blocks,
// make_managed, malloc, new[], std::vector and a private file mapping; the
// CPU sees the results.
TEST_P(ComputeMemory, KernelsOnAnyMemory) {
  UVM_NEEDS_PAGEABLE();
  stream s(dev());
  const std::size_t n = 4 * kPage / 4;
  managed_vector<std::uint32_t> mv(n);
  auto mm = make_managed<std::uint32_t[]>(n);  // NOLINT(*-avoid-c-arrays)
  const malloc_ptr ml = malloc_bytes(n * 4);
  auto nw = std::make_unique<std::uint32_t[]>(n);  // NOLINT(*-avoid-c-arrays)
  std::vector<std::uint32_t> sv(n);
  std::deque<std::uint32_t, managed_allocator<std::uint32_t>> dq(n, 0);
  ASSERT_EQ(&dq[127], &dq[0] + 127);  // the first block holds 128 elements
  fill(mv, 1, s);
  fill({mm.get(), n}, 2, s);
  fill({reinterpret_cast<std::uint32_t*>(ml.get()), n}, 3, s);
  fill({nw.get(), n}, 4, s);
  fill(sv, 5, s);
  fill({&dq[0], 128}, 6, s);  // one deque block of 128 elements
  s.synchronize();
  for (std::size_t i = 0; i < n; i++) {
    ASSERT_EQ(mv[i], 1U);
    ASSERT_EQ(mm[i], 2U);
    ASSERT_EQ(reinterpret_cast<const std::uint32_t*>(ml.get())[i], 3U);
    ASSERT_EQ(nw[i], 4U);
    ASSERT_EQ(sv[i], 5U);
  }
  for (std::size_t i = 0; i < 128; i++) {
    ASSERT_EQ(dq[i], 6U);
  }
  EXPECT_EQ(dq[128], 0U);

  const std::vector<char> data(3 * kPage, 'f');
  const Mapping fm = private_file_mapping(data);
  ASSERT_NE(fm.get(), nullptr);
  EXPECT_EQ(checksum({fm.get(), fm.size()}, s).get(), fnv1a(data.data(), data.size()));
  fill({reinterpret_cast<std::uint32_t*>(fm.get()), fm.size() / 4}, 0x41424344, s).get();
  EXPECT_EQ(fm.get()[0], 0x44);
}

// A resource preferring the CPU: the device maps its pages where they lie.
TEST_P(ComputeMemory, ResourcePreferringCpu) {
  UVM_HMMGPU_ONLY("CUDA reports no device mappings");
  managed_resource r({.preferred_location = cpu, .accessed_by = {}});
  managed_vector<std::uint32_t> v(8 * kPage / 4, 1, managed_allocator<std::uint32_t>(r));
  stream s(dev());
  increment(v, 1, s).get();
  const auto runs = residency(v, dev());
  EXPECT_EQ(summarize(runs).cpu, 8U);
  for (const auto& run : runs) {
    EXPECT_EQ(run.mapping, device_mapping::system);
  }
  EXPECT_EQ(v[0], 2U);
}

// A resource advised accessed-by this device: its kernels map the pages in
// system memory instead of moving them.
TEST_P(ComputeMemory, ResourceAccessedBy) {
  UVM_HMMGPU_ONLY("CUDA reports no per-page residency");
  managed_resource r({.preferred_location = {}, .accessed_by = {dev()}});
  EXPECT_EQ(r.advice().accessed_by.size(), 1U);
  auto a = make_managed<std::uint32_t[]>(8 * kPage / 4, r);  // NOLINT(*-avoid-c-arrays)
  stream s(dev());
  increment({a.get(), 8 * kPage / 4}, 7, s).get();
  EXPECT_EQ(pages_at({a.get(), 8 * kPage}, cpu, dev()), 8U);
  EXPECT_EQ(a[100], 7U);
}

INSTANTIATE_TEST_SUITE_P(All, ComputeMemory, ::testing::ValuesIn(or_absent(compute_devices())),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ComputeMemory);

}  // namespace
}  // namespace uvm::test
