// SPDX-License-Identifier: GPL-2.0
// The kernels of uvm/kernels.hpp as CUDA kernels (kernels.cu): launchers
// callable from C++ (cuda.cpp). Each enqueues its kernel on `s` and
// returns the launch's error (cudaGetLastError()); a result goes to
// `*out`, device memory of 8 bytes (sums as their bits, as the hmmgpu
// device reports them).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace uvm::detail::cuda_kernels {

cudaError_t nop(cudaStream_t s);
cudaError_t fill_u32(cudaStream_t s, std::uint32_t* x, std::size_t n, std::uint32_t value);
cudaError_t copy(cudaStream_t s, void* x, const void* y, std::size_t bytes);
// x = a * y + x, each operation rounded (no fused multiply-add).
cudaError_t axpy_f32(cudaStream_t s, float* x, const float* y, std::size_t n, float a);
cudaError_t scale_f32(cudaStream_t s, float* x, std::size_t n, float a);
cudaError_t increment_u32(cudaStream_t s, std::uint32_t* x, std::size_t n, std::uint32_t by);
// In ascending order, in binary64, in one thread: the result is defined by the order.
cudaError_t sum_f32(cudaStream_t s, const float* x, std::size_t n, std::uint64_t* out);
// Wrapping at 2^64 (any order gives the same).
cudaError_t sum_u64(cudaStream_t s, const std::uint64_t* x, std::size_t n, std::uint64_t* out);
// FNV-1a 64 of the bytes, in one thread.
cudaError_t checksum(cudaStream_t s, const void* x, std::size_t bytes, std::uint64_t* out);

}  // namespace uvm::detail::cuda_kernels
