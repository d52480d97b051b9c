// SPDX-License-Identifier: GPL-2.0
/// @file uvm/location.hpp
/// @brief uvm::location: the CPU (system memory) or a device (its VRAM), and
/// uvm::provider, the kind of driver behind a device.
#pragma once

#include <compare>
#include <iosfwd>
#include <string>

namespace uvm {

class device;

/// The kind of driver behind a device: what the library talks to.
enum class provider {
  hmmgpu,  ///< the hmmgpu kernel module: device N is /dev/hmmgpuN
  cuda,    ///< NVIDIA's driver through the CUDA runtime: device N is CUDA device N
};

/// "hmmgpu" or "cuda".
[[nodiscard]] const char* to_string(provider p) noexcept;

/// The type of uvm::cpu.
struct cpu_t {
  explicit constexpr cpu_t() = default;
};

/// The CPU as a location: system memory. `uvm::prefetch(r, uvm::cpu, s)`.
inline constexpr cpu_t cpu{};

/// Where memory can be: the CPU (system memory) or a device (its VRAM).
///
/// A value type naming the place, not a handle: a device location is a
/// provider and a device number in it: N of /dev/hmmgpuN, or the ordinal
/// of a CUDA device. Operations that need the device behind it (prefetch
/// to it, advice naming it) use a uvm::device of this process that is open
/// on that device, and fail with uvm::errc::no_device when there is none.
///
/// Implicitly constructible from uvm::cpu and from a uvm::device:
/// @code
/// uvm::device gpu(0);
/// uvm::location a = gpu, b = uvm::cpu;
/// assert(a != b && a == uvm::location::of_device(0));
/// assert(uvm::location::of_device(uvm::provider::cuda, 0) != a);  // cuda0 is not hmmgpu0
/// @endcode
///
/// @par Thread safety
/// A value type: distinct objects may be used from different threads.
class location {
 public:
  /// The CPU.
  constexpr location() noexcept = default;
  /// The CPU.
  constexpr location(cpu_t /*cpu*/) noexcept {}  // NOLINT(google-explicit-constructor)
  /// The device `d` (its number; `d` need not stay open).
  location(const device& d);  // NOLINT(google-explicit-constructor)

  /// The device /dev/hmmgpu`index`.
  [[nodiscard]] static constexpr location of_device(unsigned index) noexcept {
    return of_device(uvm::provider::hmmgpu, index);
  }
  /// Device `index` of provider `p` (0 to 65535).
  [[nodiscard]] static constexpr location of_device(uvm::provider p, unsigned index) noexcept {
    location l;
    l.device_ = static_cast<int>((index & kIndexMask) | (p == uvm::provider::cuda ? kCudaBit : 0U));
    return l;
  }

  /// True for the CPU.
  [[nodiscard]] constexpr bool is_cpu() const noexcept { return device_ < 0; }
  /// True for a device.
  [[nodiscard]] constexpr bool is_device() const noexcept { return device_ >= 0; }
  /// The device's number in its provider: N of /dev/hmmgpuN, or the CUDA
  /// device ordinal; meaningful only when is_device().
  [[nodiscard]] constexpr unsigned device_index() const noexcept {
    return static_cast<unsigned>(device_) & kIndexMask;
  }
  /// The provider of the device; meaningful only when is_device().
  [[nodiscard]] constexpr uvm::provider provider() const noexcept {
    return (static_cast<unsigned>(device_) & kCudaBit) != 0 ? uvm::provider::cuda
                                                            : uvm::provider::hmmgpu;
  }

  /// Same place. The CPU orders before every device, hmmgpu devices
  /// before CUDA devices, and devices of a provider by number.
  friend constexpr bool operator==(const location&, const location&) noexcept = default;
  /// See operator==.
  // NOLINTBEGIN(modernize-use-nullptr): a clang-tidy 14 false positive
  friend constexpr std::strong_ordering operator<=>(const location&,
                                                    const location&) noexcept = default;
  // NOLINTEND(modernize-use-nullptr)

 private:
  static constexpr unsigned kIndexMask = 0xffff;
  static constexpr unsigned kCudaBit = 0x10000;
  int device_ = -1;  // -1: the CPU; else the index, with kCudaBit for CUDA
};

/// "cpu", "hmmgpuN" or "cudaN".
[[nodiscard]] std::string to_string(const location& l);
/// Writes to_string(l).
std::ostream& operator<<(std::ostream& os, const location& l);

}  // namespace uvm
