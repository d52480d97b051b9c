// SPDX-License-Identifier: GPL-2.0
/// @file uvm/device.hpp
/// @brief Devices: enumeration, providers, uvm::device (an open device),
/// properties, counters.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "uvm/location.hpp"

namespace uvm {

namespace detail {
class device_impl;
struct access;
}  // namespace detail

/// What implements a device.
enum class backend {
  emu,      ///< the emulated PCI GPU (hmmgpu-emu): migrates and runs kernels
  sysram,   ///< "VRAM" carved from system RAM: migrates, runs no kernels
  unknown,  ///< a backend this library version does not know
  cuda,     ///< an NVIDIA GPU driven by NVIDIA's driver (provider::cuda)
};

/// "emu", "sysram", "unknown" or "cuda".
[[nodiscard]] const char* to_string(backend b) noexcept;

/// A device's state as the driver reports it.
enum class device_state {
  ready,   ///< working
  halted,  ///< failed (a hung or faulty device, or a CUDA context with a
           ///< sticky error); migrations and launches fail
  lost,    ///< gone (removed or its emulator vanished); only closing remains
  unknown  ///< a state this library version does not know
};

/// "ready", "halted", "lost" or "unknown".
[[nodiscard]] const char* to_string(device_state s) noexcept;

/// Something a device may or may not do (device_properties::supports()).
enum class capability {
  nop,          ///< round trips of empty commands (device::ping())
  migrate,      ///< prefetch to and from its VRAM, residency queries
  counters,     ///< device::counters() (see device_properties::unavailable_counters)
  compute,      ///< kernels (uvm/kernels.hpp); the sysram backend has none
  peer_access,  ///< VRAM-to-VRAM migration with some other device (driver 1.4;
                ///< cudaDeviceCanAccessPeer() for CUDA devices)
};

/// A version of the driver's user-space interface (uapi), e.g. 1.3; for
/// a CUDA device, the CUDA driver's version, e.g. 13.0.
struct driver_version {
  unsigned major = 0;  ///< incompatible changes
  unsigned minor = 0;  ///< compatible additions
  /// Ordered by major, then minor.
  // NOLINTNEXTLINE(modernize-use-nullptr): a clang-tidy 14 false positive
  friend constexpr auto operator<=>(const driver_version&, const driver_version&) = default;
};

/// A device as enumeration sees it: an hmmgpu device read from sysfs
/// (/sys/class/hmmgpu/hmmgpuN/) without opening it; a CUDA device from the
/// CUDA runtime (cudaGetDeviceProperties(), cudaMemGetInfo()).
struct device_summary {
  unsigned index = 0;                       ///< N of /dev/hmmgpuN, or the CUDA device ordinal
  std::filesystem::path path;               ///< "/dev/hmmgpuN"; empty for a CUDA device
  std::string name;                         ///< the device's name
  uvm::backend backend = backend::unknown;  ///< what implements it (backend::cuda: a CUDA device)
  std::uint64_t vram_total = 0;             ///< bytes of device memory
  std::uint64_t vram_used = 0;              ///< bytes of it in use now
  unsigned copy_channels = 0;               ///< copy-engine channels (CUDA: async engines)
  device_state state = device_state::unknown;  ///< as of the enumeration

  /// The provider of the device: provider::cuda for backend::cuda.
  [[nodiscard]] uvm::provider provider() const noexcept {
    return backend == backend::cuda ? uvm::provider::cuda : uvm::provider::hmmgpu;
  }
  /// Where the device is: location::of_device(provider(), index).
  [[nodiscard]] uvm::location where() const noexcept {
    return uvm::location::of_device(provider(), index);
  }
};

/// Every device of the machine, of every available provider, without
/// opening any: the hmmgpu devices by N, then the CUDA devices by ordinal.
///
/// @return the devices; empty when there is none (hmmgpu.ko not loaded,
///         and no CUDA device, or a libuvm built without CUDA). A provider
///         that has no device is left out; provider_status() says why.
/// @throws uvm::error a sysfs attribute of a device could not be read
///         (a device removed during the enumeration is left out instead).
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] std::vector<device_summary> list_devices();

/// A provider's state in this process (provider_status()).
struct provider_info {
  uvm::provider provider = provider::hmmgpu;  ///< which
  bool built = false;    ///< this libuvm has it (CUDA: built with UVM_WITH_CUDA)
  unsigned devices = 0;  ///< its devices now
  /// Why it has no device, e.g. "no hmmgpu device: /sys/class/hmmgpu is
  /// empty (is hmmgpu.ko loaded?)" or "no CUDA device: cudaGetDeviceCount:
  /// cudaErrorNoDevice: no CUDA-capable device is detected"; empty when it
  /// has devices.
  std::string reason;
};

/// Whether provider `p` has devices here, and why not.
///
/// @return its state; never throws for a missing driver (that is a reason).
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] provider_info provider_status(provider p);

/// A device's fixed properties, from the driver at open.
///
/// For a CUDA device: the name, memory and compute capability from
/// cudaGetDeviceProperties(), `driver` from cudaDriverGetVersion(),
/// `copy_channels` the asynchronous copy engines, `streams` 8 (the
/// default hardware work queues; every uvm::stream has a CUDA stream of
/// its own), `contexts` 0 (no limit), migration (prefetch, advice,
/// residency) when it has concurrent managed access.
struct device_properties {
  unsigned index = 0;                       ///< N of /dev/hmmgpuN, or the CUDA device ordinal
  std::string name;                         ///< the device's name
  uvm::backend backend = backend::unknown;  ///< what implements it (backend::cuda: a CUDA device)
  std::uint32_t hw_version = 0;             ///< the emulated GPU's VERSION register; 0 for sysram
                                            ///< and CUDA (see compute_capability)
  std::uint64_t vram_total = 0;             ///< bytes of device memory
  unsigned copy_channels = 0;               ///< copy-engine channels
  unsigned streams = 0;                     ///< hardware compute streams (0 without compute)
  unsigned contexts = 0;              ///< processes that may launch kernels at once (0: no limit)
  driver_version driver;              ///< the uapi version of the running driver
  std::uint64_t peer_mask = 0;        ///< bit N: device N (of the same provider) is a peer
                                      ///< (hmmgpu: driver 1.4; else 0)
  std::uint32_t capability_bits = 0;  ///< raw capability bits; use supports()
  /// The device reaches ordinary memory of the process (malloc, the stack,
  /// mmap): always on hmmgpu; on a CUDA device when it reports pageable
  /// memory access (cudaDevAttrPageableMemoryAccess: HMM with NVIDIA's
  /// open kernel modules). Without it, only managed memory
  /// (uvm/memory.hpp, cudaMallocManaged) works, and other memory is
  /// refused with errc::not_supported.
  bool pageable_memory_access = false;
  /// CUDA: major * 10 + minor of the compute capability (90 for sm_90); 0 on hmmgpu.
  unsigned compute_capability = 0;
  /// The fields of device_counters this device does not report: they read
  /// 0 whatever happens (hmmgpu: the fields of driver 1.4 with an older
  /// driver; CUDA: all of them, the CUDA runtime exposes none). By their
  /// names in device_counters, e.g. "device_faults", "channel_busy".
  std::vector<std::string> unavailable_counters;

  /// Whether the device can do `c`.
  [[nodiscard]] bool supports(capability c) const noexcept;
  /// Whether counters() reports the field named `counter` (see
  /// unavailable_counters).
  [[nodiscard]] bool reports(const std::string& counter) const;
  /// The provider of the device: provider::cuda for backend::cuda.
  [[nodiscard]] uvm::provider provider() const noexcept {
    return backend == backend::cuda ? uvm::provider::cuda : uvm::provider::hmmgpu;
  }
};

/// Device memory use now (hmmgpu: from sysfs; CUDA: cudaMemGetInfo()).
struct memory_info {
  std::uint64_t total = 0;  ///< bytes of VRAM
  std::uint64_t used = 0;   ///< bytes in use, by every process
  std::uint64_t free = 0;   ///< total - used
};

/// A device's counters (device::counters()). They start at zero when the
/// device is registered and only grow; subtract two readings to measure an
/// interval (operator-). Fields marked (1.4) read zero with an older
/// driver; device_properties::unavailable_counters names every field a
/// device does not report (on a CUDA device, all of them).
struct device_counters {
  std::uint64_t to_device_pages = 0;       ///< pages migrated into this device's VRAM
  std::uint64_t to_device_bytes = 0;       ///< bytes of to_device_pages
  std::uint64_t to_system_pages = 0;       ///< pages migrated from it to system memory
  std::uint64_t to_system_bytes = 0;       ///< bytes of to_system_pages
  std::uint64_t cpu_faults = 0;            ///< CPU faults on its memory
  std::uint64_t fault_around_pages = 0;    ///< neighbours those faults moved too
  std::uint64_t copy_batches = 0;          ///< copies submitted to the copy engine
  std::uint64_t copy_errors = 0;           ///< pages whose copy failed
  std::uint64_t vram_alloc_failures = 0;   ///< device pages that could not be allocated
  std::uint64_t device_faults = 0;         ///< page faults the device reported
  std::uint64_t fault_replays = 0;         ///< replays of faulted launches
  std::uint64_t fault_cancels = 0;         ///< faulting pages that failed their launch
  std::uint64_t evicted_chunks = 0;        ///< 2 MiB chunks evicted when VRAM was full
  std::uint64_t evicted_pages = 0;         ///< pages those evictions moved
  std::uint64_t evicted_bytes = 0;         ///< bytes of evicted_pages (1.4)
  std::uint64_t fault_batches = 0;         ///< batches of device faults serviced (1.4)
  std::uint64_t fault_duplicates = 0;      ///< duplicate device faults in a batch (1.4)
  std::uint64_t prefetched_pages = 0;      ///< pages the fault prefetcher moved (1.4)
  std::uint64_t remote_mapped_pages = 0;   ///< pages mapped where they lie (1.4)
  std::uint64_t thrashing_events = 0;      ///< pages found bouncing between processors (1.4)
  std::uint64_t peer_to_device_pages = 0;  ///< pages moved in straight from a peer's VRAM (1.4)
  std::uint64_t peer_to_device_bytes = 0;  ///< bytes of peer_to_device_pages (1.4)
  std::uint64_t tlb_invalidates = 0;       ///< TLB invalidations ordered (1.4)
  std::uint64_t fault_dropped = 0;         ///< faults a full fault buffer dropped (1.4)
  /// Per copy channel, the time it was busy (doorbell to completion).
  std::vector<std::chrono::nanoseconds> channel_busy;

  /// Field by field a - b: the counts of the interval between two readings.
  friend device_counters operator-(const device_counters& a, const device_counters& b);
};

/// An open device of this process: /dev/hmmgpuN, or a CUDA device.
///
/// The device's file (or CUDA context) binds the address space of the
/// process that opens it: a device, and the streams and resources using
/// it, belong to that process. **Do not use them in a child after fork()**: the calls fail
/// with errc::wrong_process (the child must open its own devices).
///
/// RAII: the constructor opens the device, the destructor closes it
/// (close() does it earlier). Once closed, every call that needs the
/// driver throws errc::device_closed; index() and properties() stay
/// valid. Work still queued on a uvm::stream of the device then fails with
/// errc::device_closed: synchronize streams before closing their device.
/// Advice set through a device lasts while some device of the process
/// that set advice stays open.
///
/// @code
/// for (const auto& s : uvm::list_devices())
///   std::printf("%u %s %s\n", s.index, s.name.c_str(), uvm::to_string(s.backend));
/// uvm::device gpu(0);                          // /dev/hmmgpu0
/// uvm::device nv(uvm::provider::cuda, 0);     // CUDA device 0
/// uvm::device first(uvm::list_devices().at(0));
/// if (gpu.supports(uvm::capability::compute)) { ... }
/// @endcode
///
/// @par Thread safety
/// All members may be called from several threads at once, close() too
/// (it waits for calls in progress). Moving, assigning and destroying must
/// not race with other calls on the same object.
class device {
 public:
  /// Opens /dev/hmmgpu`index`.
  ///
  /// @throws uvm::error errc::no_device when there is no such device;
  ///         errc::device_lost when it is being removed; a system errno
  ///         (e.g. EACCES) when open(2) fails otherwise.
  explicit device(unsigned index);

  /// Opens device `index` of provider `p`: /dev/hmmgpu`index`, or CUDA
  /// device `index` (its primary context).
  ///
  /// @throws uvm::error errc::no_device when there is no such device (the
  ///         message says why, e.g. no CUDA driver, or a libuvm built
  ///         without CUDA); as device(unsigned) otherwise.
  device(provider p, unsigned index);

  /// Opens the device `s` describes (from list_devices()).
  /// @throws uvm::error as device(provider, unsigned).
  explicit device(const device_summary& s);

  /// Closes the device (see close()).
  ~device();
  device(const device&) = delete;
  device& operator=(const device&) = delete;
  /// Takes over `other`'s device; `other` is left closed.
  device(device&& other) noexcept;
  /// Closes this device, then takes over `other`'s.
  device& operator=(device&& other) noexcept;

  /// N of /dev/hmmgpuN, or the CUDA device ordinal.
  /// @throws uvm::error errc::device_closed for a moved-from device.
  [[nodiscard]] unsigned index() const;

  /// The properties read at open.
  /// @throws uvm::error errc::device_closed for a moved-from device.
  [[nodiscard]] const device_properties& properties() const;

  /// properties().supports(c).
  /// @throws uvm::error errc::device_closed for a moved-from device.
  [[nodiscard]] bool supports(capability c) const;

  /// Memory use now (hmmgpu: from sysfs; CUDA: cudaMemGetInfo()).
  /// @throws uvm::error errc::device_closed; errc::device_lost when the
  ///         device is gone.
  [[nodiscard]] memory_info memory() const;

  /// The device's state now (from sysfs).
  /// @return device_state::lost once the device is gone.
  /// @throws uvm::error errc::device_closed.
  [[nodiscard]] device_state state() const;

  /// The device's counters now.
  /// @throws uvm::error errc::device_closed; errc::device_lost;
  ///         errc::not_supported without capability::counters.
  [[nodiscard]] device_counters counters() const;

  /// Whether pages in `other`'s VRAM move straight to this device's VRAM
  /// (and can be mapped by it) without a bounce through system memory:
  /// `other` is a peer (driver 1.4; for CUDA devices,
  /// cudaDeviceCanAccessPeer()). With an older driver, always false:
  /// prefetches between devices then go through system memory.
  /// @return false for `other` being this same device, or a device of
  ///         another provider.
  /// @throws uvm::error errc::device_closed (either device moved from).
  [[nodiscard]] bool can_access_peer(const device& other) const;

  /// Submits `count` empty commands back to back on the device's control
  /// queue (CUDA: `count` empty kernels on a stream) and waits for the
  /// last one.
  /// @param count 1 to 4096
  /// @return the time from the first doorbell to the last completion, as
  ///         the driver measured it (CUDA: as the host measured it).
  /// @throws uvm::error errc::invalid_argument for a count out of range;
  ///         errc::device_closed, errc::device_lost, errc::device_failed,
  ///         errc::timed_out; errc::not_supported without capability::nop.
  [[nodiscard]] std::chrono::nanoseconds ping(unsigned count = 1) const;

  /// Closes the device now, after any call in progress on it returns.
  /// Idempotent.
  void close() noexcept;

  /// False after close() and for a moved-from device.
  [[nodiscard]] bool is_open() const noexcept;

 private:
  friend struct detail::access;
  std::shared_ptr<detail::device_impl> impl_;
};

}  // namespace uvm
