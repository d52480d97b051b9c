// SPDX-License-Identifier: GPL-2.0
// Built with -ffp-contract=off (emu/CMakeLists.txt): a · y + x is two roundings, as SPEC 4.7 says.
#include "compute.h"

#include <array>
#include <bit>
#include <cstring>

#include "regs.h"

namespace hmmgpu {
namespace {

namespace k = regs::launch;

constexpr std::array<KernelInfo, 8> kKernels{{
    {.id = k::kFillU32,
     .name = "FILL_U32",
     .size = 4,
     .has_y = false,
     .has_scalar = true,
     .writes_x = true},
    {.id = k::kCopy,
     .name = "COPY",
     .size = 1,
     .has_y = true,
     .has_scalar = false,
     .writes_x = true},
    {.id = k::kAxpyF32,
     .name = "AXPY_F32",
     .size = 4,
     .has_y = true,
     .has_scalar = true,
     .writes_x = true},
    {.id = k::kScaleF32,
     .name = "SCALE_F32",
     .size = 4,
     .has_y = false,
     .has_scalar = true,
     .writes_x = true},
    {.id = k::kIncrementU32,
     .name = "INCREMENT_U32",
     .size = 4,
     .has_y = false,
     .has_scalar = true,
     .writes_x = true},
    {.id = k::kSumF32,
     .name = "SUM_F32",
     .size = 4,
     .has_y = false,
     .has_scalar = false,
     .writes_x = false},
    {.id = k::kSumU64,
     .name = "SUM_U64",
     .size = 8,
     .has_y = false,
     .has_scalar = false,
     .writes_x = false},
    {.id = k::kChecksum,
     .name = "CHECKSUM",
     .size = 1,
     .has_y = false,
     .has_scalar = false,
     .writes_x = false},
}};

// Unaligned-safe element access to guest memory (memcpy compiles to one load or store).
template <typename T>
T load(const std::byte* p) {
  T value{};
  std::memcpy(&value, p, sizeof(T));
  return value;
}
template <typename T>
void store(std::byte* p, T value) {
  std::memcpy(p, &value, sizeof(T));
}

}  // namespace

const KernelInfo* find_kernel(uint32_t id) {
  for (const KernelInfo& kernel : kKernels) {
    if (kernel.id == id) {
      return &kernel;
    }
  }
  return nullptr;
}

KernelAccumulator kernel_start(const KernelInfo& kernel) {
  return KernelAccumulator{.sum_f64 = 0.0,
                           .value = kernel.id == k::kChecksum ? k::kFnvBasis : uint64_t{0}};
}

uint64_t kernel_result(const KernelInfo& kernel, const KernelAccumulator& acc) {
  switch (kernel.id) {
    case k::kSumF32:
      return std::bit_cast<uint64_t>(acc.sum_f64);
    case k::kSumU64:
    case k::kChecksum:
      return acc.value;
    default:
      return 0;
  }
}

void run_kernel(const KernelInfo& kernel, std::byte* x, const std::byte* y, uint64_t n,
                uint32_t scalar, KernelAccumulator& acc) {
  const auto a = std::bit_cast<float>(scalar);
  switch (kernel.id) {
    case k::kFillU32:
      for (uint64_t i = 0; i < n; ++i) {
        store<uint32_t>(x + 4 * i, scalar);
      }
      break;
    case k::kCopy:
      std::memmove(x, y, n);  // different VAs never overlap; aliasing pages are unspecified
      break;
    case k::kAxpyF32:
      for (uint64_t i = 0; i < n; ++i) {
        const float product = a * load<float>(y + 4 * i);  // rounded to binary32 first
        store<float>(x + 4 * i, product + load<float>(x + 4 * i));
      }
      break;
    case k::kScaleF32:
      for (uint64_t i = 0; i < n; ++i) {
        store<float>(x + 4 * i, a * load<float>(x + 4 * i));
      }
      break;
    case k::kIncrementU32:
      for (uint64_t i = 0; i < n; ++i) {
        store<uint32_t>(x + 4 * i, load<uint32_t>(x + 4 * i) + scalar);  // wraps mod 2^32
      }
      break;
    case k::kSumF32:
      for (uint64_t i = 0; i < n; ++i) {
        acc.sum_f64 += static_cast<double>(load<float>(x + 4 * i));
      }
      break;
    case k::kSumU64:
      for (uint64_t i = 0; i < n; ++i) {
        acc.value += load<uint64_t>(x + 8 * i);
      }
      break;
    case k::kChecksum:
      for (uint64_t i = 0; i < n; ++i) {
        acc.value = (acc.value ^ static_cast<uint8_t>(x[i])) * k::kFnvPrime;
      }
      break;
    default:
      break;
  }
}

}  // namespace hmmgpu
