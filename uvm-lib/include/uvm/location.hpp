// SPDX-License-Identifier: GPL-2.0
/// @file uvm/location.hpp
/// @brief uvm::location: the CPU (system memory) or a device (its VRAM).
#pragma once

#include <compare>
#include <iosfwd>
#include <string>

namespace uvm {

class device;

/// The type of uvm::cpu.
struct cpu_t {
  explicit constexpr cpu_t() = default;
};

/// The CPU as a location: system memory. `uvm::prefetch(r, uvm::cpu, s)`.
inline constexpr cpu_t cpu{};

/// Where memory can be: the CPU (system memory) or a device (its VRAM).
///
/// A value type naming the place, not a handle: a device location is the
/// number N of /dev/hmmgpuN. Operations that need the device behind it
/// (prefetch to it, advice naming it) use a uvm::device of this process
/// that is open on that number, and fail with uvm::errc::no_device when
/// there is none.
///
/// Implicitly constructible from uvm::cpu and from a uvm::device:
/// @code
/// uvm::device gpu(0);
/// uvm::location a = gpu, b = uvm::cpu;
/// assert(a != b && a == uvm::location::of_device(0));
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
    location l;
    l.device_ = static_cast<int>(index);
    return l;
  }

  /// True for the CPU.
  [[nodiscard]] constexpr bool is_cpu() const noexcept { return device_ < 0; }
  /// True for a device.
  [[nodiscard]] constexpr bool is_device() const noexcept { return device_ >= 0; }
  /// N of the device's /dev/hmmgpuN; meaningful only when is_device().
  [[nodiscard]] constexpr unsigned device_index() const noexcept {
    return static_cast<unsigned>(device_);
  }

  /// Same place. The CPU orders before every device, devices by number.
  friend constexpr bool operator==(const location&, const location&) noexcept = default;
  /// See operator==.
  // NOLINTBEGIN(modernize-use-nullptr): a clang-tidy 14 false positive
  friend constexpr std::strong_ordering operator<=>(const location&,
                                                    const location&) noexcept = default;
  // NOLINTEND(modernize-use-nullptr)

 private:
  int device_ = -1;
};

/// "cpu" or "hmmgpuN".
[[nodiscard]] std::string to_string(const location& l);
/// Writes to_string(l).
std::ostream& operator<<(std::ostream& os, const location& l);

}  // namespace uvm
