// SPDX-License-Identifier: GPL-2.0
// (clang-format must not reflow the Markdown table below: one row per line.)
// clang-format off
/// @file uvm/uvm.hpp
/// @brief The uvm library: Unified Memory for hmmgpu and CUDA devices. Includes every header.
///
/// @mainpage uvm: Unified Memory on hmmgpu and CUDA devices
///
/// hmmgpu devices mirror the address space of the process through the
/// kernel's HMM: any pointer of the process is valid on a device, and
/// pages migrate between system memory and device memory (VRAM) on demand,
/// on faults, or when prefetched. This library is the C++20 interface to
/// it, shaped like CUDA's managed-memory API.
///
/// **Providers.** The same program runs on real NVIDIA GPUs: a device is
/// either an hmmgpu device (uvm::provider::hmmgpu) or a CUDA device
/// (uvm::provider::cuda, when libuvm is built with the CUDA Toolkit), and
/// uvm::list_devices() lists both. On a CUDA device, managed memory is
/// cudaMallocManaged(), prefetch is cudaMemPrefetchAsync(), advice is
/// cudaMemAdvise(), queries are cudaMemRangeGetAttribute(), streams have
/// CUDA streams, and the kernels are CUDA kernels with the same results;
/// ordinary memory works where the device has pageable memory access
/// (HMM). uvm::provider_status() says why a provider has no device.
///
///
/// | header | what |
/// |--------|------|
/// | uvm/device.hpp | uvm::list_devices(), uvm::provider_status(), uvm::device, properties, counters |
/// | uvm/location.hpp | uvm::location: uvm::cpu or a device; uvm::provider |
/// | uvm/range.hpp | uvm::memory_range and its page rounding |
/// | uvm/memory.hpp | uvm::managed_allocator, uvm::managed_vector, uvm::make_managed |
/// | uvm/hints.hpp | uvm::prefetch, uvm::advise, uvm::residency, uvm::range_attributes |
/// | uvm/stream.hpp | uvm::stream, uvm::event |
/// | uvm/kernels.hpp | the device's kernels: fill, copy_bytes, axpy, scale, increment, sum, checksum |
/// | uvm/error.hpp | uvm::errc, uvm::error_category(), uvm::error |
/// | uvm/version.hpp | UVM_VERSION_*, uvm::version() |
///
/// @code
/// #include <uvm/uvm.hpp>
///
/// int main() {
///   uvm::device gpu(0);                          // /dev/hmmgpu0
///   uvm::stream s(gpu);
///   uvm::managed_vector<float> x(1 << 20, 1.0F), y(1 << 20, 2.0F);
///   std::vector<float> z(1 << 20, 3.0F);         // ordinary memory works too
///
///   uvm::advise(x, uvm::advice::preferred_location, gpu);
///   uvm::prefetch(x, gpu, s);                    // asynchronous, in stream order
///   uvm::prefetch(y, gpu, s);
///   uvm::axpy(2.0F, x, y, s);                    // y = 2x + y on the device
///   std::future<double> total = uvm::sum(y, s);  // a kernel's result
///   uvm::scale(0.5F, z, s);
///   s.synchronize();                             // throws if anything above failed
///
///   std::printf("%g %g\n", total.get(), y[0]);   // the CPU reads y: pages come back
///   for (const auto& run : uvm::residency(y, gpu))
///     std::cout << run.pages << " at " << (run.where ? uvm::to_string(*run.where) : "-") << "\n";
/// }
/// @endcode
///
/// Build with `find_package(uvm)` and `target_link_libraries(app uvm::uvm)`
/// (or `uvm::uvm_static`), or `pkg-config --cflags --libs uvm`; C++20.
///
/// **Processes.** Devices, streams and the resources that use them belong
/// to the process that opened them; a child after fork() must open its
/// own (calls fail with uvm::errc::wrong_process).
// clang-format on
#pragma once

#include "uvm/device.hpp"
#include "uvm/error.hpp"
#include "uvm/hints.hpp"
#include "uvm/kernels.hpp"
#include "uvm/location.hpp"
#include "uvm/memory.hpp"
#include "uvm/range.hpp"
#include "uvm/stream.hpp"
#include "uvm/version.hpp"
