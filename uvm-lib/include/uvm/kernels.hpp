// SPDX-License-Identifier: GPL-2.0
/// @file uvm/kernels.hpp
/// @brief The device's built-in kernels, launched on a uvm::stream.
///
/// Each function enqueues one kernel on a stream and returns a
/// `std::future` of its result (`void` for the kernels without one). The
/// kernel runs on the stream's device, on the caller's memory where it
/// lies: pages the device has no mapping for are faulted in by the driver
/// (by default migrated to the device's VRAM, see uvm::advise). Any memory
/// of the process works; the device needs read access to the inputs and
/// write access to the outputs.
///
/// **Checked when enqueued** (thrown by the call): the device runs
/// kernels (capability::compute; errc::not_supported otherwise, e.g. on a
/// sysram device), each operand is aligned to its element size
/// (errc::misaligned), is at most max_kernel_bytes (errc::invalid_argument)
/// and does not wrap (errc::invalid_range), and paired operands have the
/// same length (errc::invalid_argument).
///
/// **Reported by the stream** (its synchronize(), and the future): the
/// device touched memory the process has not mapped with the access it
/// needs (errc::bad_address, the message names the page; the elements
/// before it may have been processed), the device failed
/// (errc::device_failed), the device is busy (errc::busy), the device was
/// closed or lost (errc::device_closed, errc::device_lost).
///
/// An operand of no elements makes a kernel that does nothing: its result
/// is that of no elements (0 for sums, the FNV-1a offset basis for
/// checksum).
///
/// f32 arithmetic is IEEE 754 binary32, rounded per operation (no fused
/// multiply-add), elements processed in ascending order.
///
/// **On a CUDA device** the kernels are CUDA kernels with the same
/// results, bit for bit: sum(float) and checksum, whose results depend on
/// the order of the elements, run in one GPU thread. The memory is checked
/// before the launch: managed memory, or with pageable memory access any
/// memory mapped with the access the kernel needs; anything else fails
/// the kernel with errc::bad_address (not mapped) or errc::not_supported
/// (ordinary memory without pageable memory access) rather than faulting
/// the device. A CUDA error while a kernel runs (an illegal address)
/// leaves the device's context unusable: errc::device_failed, and the
/// device reads device_state::halted.
///
/// @par Thread safety
/// As enqueueing on a stream: safe from several threads at once. The
/// memory must stay mapped, and must not be written by others, until the
/// kernel has run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <span>

#include "uvm/range.hpp"
#include "uvm/stream.hpp"

namespace uvm {

/// The largest operand of one kernel, in bytes (256 MiB).
inline constexpr std::size_t max_kernel_bytes = std::size_t{256} << 20;

/// x[i] = value for every element.
std::future<void> fill(std::span<std::uint32_t> x, std::uint32_t value, stream& s);

/// Copies the bytes of `src` to `dst`, like memcpy. (Not named `copy`, so
/// that unqualified calls on standard containers do not find std::copy.)
/// @throws uvm::error errc::invalid_argument when the sizes differ or the
///         ranges overlap.
std::future<void> copy_bytes(memory_range dst, memory_range src, stream& s);

/// y[i] = a * x[i] + y[i] (BLAS saxpy).
std::future<void> axpy(float a, std::span<const float> x, std::span<float> y, stream& s);

/// x[i] = a * x[i] (BLAS sscal).
std::future<void> scale(float a, std::span<float> x, stream& s);

/// x[i] += by, wrapping at 2^32.
std::future<void> increment(std::span<std::uint32_t> x, std::uint32_t by, stream& s);

/// The sum of x, each element converted exactly to binary64 and added in
/// binary64 in ascending order.
std::future<double> sum(std::span<const float> x, stream& s);

/// The sum of x, wrapping at 2^64.
std::future<std::uint64_t> sum(std::span<const std::uint64_t> x, stream& s);

/// The FNV-1a 64-bit hash of the bytes of `bytes`.
std::future<std::uint64_t> checksum(memory_range bytes, stream& s);

}  // namespace uvm
