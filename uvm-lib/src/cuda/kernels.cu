// SPDX-License-Identifier: GPL-2.0
// The kernels of uvm/kernels.hpp on CUDA devices, with the results of the
// hmmgpu device's (emu/SPEC.md): f32 arithmetic rounded per operation
// (__fmul_rn, __fadd_rn: never contracted into a fused multiply-add), the
// float sum and the checksum, whose results depend on the order of the
// elements, computed in ascending order by one thread.
#include <cstdint>

#include "kernels.hpp"

namespace uvm::detail::cuda_kernels {
namespace {

constexpr unsigned kThreads = 256;
constexpr std::size_t kMaxBlocks = 4096;

// Blocks for n elements, grid-stride loops doing the rest.
unsigned blocks(std::size_t n) {
  const std::size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b));
}

__device__ std::size_t first() { return std::size_t{blockIdx.x} * blockDim.x + threadIdx.x; }
__device__ std::size_t stride() { return std::size_t{gridDim.x} * blockDim.x; }

__global__ void nop_kernel() {}

__global__ void fill_kernel(std::uint32_t* x, std::size_t n, std::uint32_t v) {
  for (std::size_t i = first(); i < n; i += stride()) {
    x[i] = v;
  }
}

__global__ void copy_kernel(unsigned char* x, const unsigned char* y, std::size_t n) {
  for (std::size_t i = first(); i < n; i += stride()) {
    x[i] = y[i];
  }
}

__global__ void axpy_kernel(float* x, const float* y, std::size_t n, float a) {
  for (std::size_t i = first(); i < n; i += stride()) {
    x[i] = __fadd_rn(__fmul_rn(a, y[i]), x[i]);
  }
}

__global__ void scale_kernel(float* x, std::size_t n, float a) {
  for (std::size_t i = first(); i < n; i += stride()) {
    x[i] = __fmul_rn(a, x[i]);
  }
}

__global__ void increment_kernel(std::uint32_t* x, std::size_t n, std::uint32_t by) {
  for (std::size_t i = first(); i < n; i += stride()) {
    x[i] += by;
  }
}

__global__ void sum_f32_kernel(const float* x, std::size_t n, std::uint64_t* out) {
  double acc = 0;
  for (std::size_t i = 0; i < n; i++) {
    acc = __dadd_rn(acc, static_cast<double>(x[i]));
  }
  *out = static_cast<std::uint64_t>(__double_as_longlong(acc));
}

__global__ void sum_u64_kernel(const std::uint64_t* x, std::size_t n, std::uint64_t* out) {
  __shared__ unsigned long long part[kThreads];
  unsigned long long acc = 0;
  for (std::size_t i = first(); i < n; i += stride()) {
    acc += x[i];
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      part[threadIdx.x] += part[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    atomicAdd(reinterpret_cast<unsigned long long*>(out), part[0]);
  }
}

__global__ void checksum_kernel(const unsigned char* x, std::size_t n, std::uint64_t* out) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < n; i++) {
    h = (h ^ x[i]) * 0x100000001b3ULL;
  }
  *out = h;
}

}  // namespace

cudaError_t nop(cudaStream_t s) {
  nop_kernel<<<1, 1, 0, s>>>();
  return cudaGetLastError();
}

cudaError_t fill_u32(cudaStream_t s, std::uint32_t* x, std::size_t n, std::uint32_t value) {
  fill_kernel<<<blocks(n), kThreads, 0, s>>>(x, n, value);
  return cudaGetLastError();
}

cudaError_t copy(cudaStream_t s, void* x, const void* y, std::size_t bytes) {
  copy_kernel<<<blocks(bytes), kThreads, 0, s>>>(static_cast<unsigned char*>(x),
                                                 static_cast<const unsigned char*>(y), bytes);
  return cudaGetLastError();
}

cudaError_t axpy_f32(cudaStream_t s, float* x, const float* y, std::size_t n, float a) {
  axpy_kernel<<<blocks(n), kThreads, 0, s>>>(x, y, n, a);
  return cudaGetLastError();
}

cudaError_t scale_f32(cudaStream_t s, float* x, std::size_t n, float a) {
  scale_kernel<<<blocks(n), kThreads, 0, s>>>(x, n, a);
  return cudaGetLastError();
}

cudaError_t increment_u32(cudaStream_t s, std::uint32_t* x, std::size_t n, std::uint32_t by) {
  increment_kernel<<<blocks(n), kThreads, 0, s>>>(x, n, by);
  return cudaGetLastError();
}

cudaError_t sum_f32(cudaStream_t s, const float* x, std::size_t n, std::uint64_t* out) {
  sum_f32_kernel<<<1, 1, 0, s>>>(x, n, out);
  return cudaGetLastError();
}

cudaError_t sum_u64(cudaStream_t s, const std::uint64_t* x, std::size_t n, std::uint64_t* out) {
  if (cudaError_t e = cudaMemsetAsync(out, 0, sizeof(*out), s); e != cudaSuccess) {
    return e;
  }
  sum_u64_kernel<<<blocks(n), kThreads, 0, s>>>(x, n, out);
  return cudaGetLastError();
}

cudaError_t checksum(cudaStream_t s, const void* x, std::size_t bytes, std::uint64_t* out) {
  checksum_kernel<<<1, 1, 0, s>>>(static_cast<const unsigned char*>(x), bytes, out);
  return cudaGetLastError();
}

}  // namespace uvm::detail::cuda_kernels
