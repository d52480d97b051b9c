// SPDX-License-Identifier: GPL-2.0
/// @file uvm/hints.hpp
/// @brief Hints and queries on ranges: uvm::prefetch, uvm::advise,
/// uvm::residency, uvm::range_attributes.
///
/// Every function here applies to the pages that overlap its range (see
/// uvm::memory_range) and takes any memory of the process. An empty range
/// does nothing (and residency() of it is empty).
///
/// **On a CUDA device** they map to cudaMemPrefetchAsync(), cudaMemAdvise()
/// and cudaMemRangeGetAttribute(s)(), on managed memory (uvm/memory.hpp)
/// and, where the device has pageable memory access
/// (device_properties::pageable_memory_access), on any memory; other
/// memory is refused with errc::not_supported, saying why. CUDA reports
/// no per-page outcome of a prefetch and no per-page residency: see
/// prefetch_result and residency() for what stands in for them.
#pragma once

#include <cstddef>
#include <future>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "uvm/device.hpp"
#include "uvm/location.hpp"
#include "uvm/range.hpp"

namespace uvm {

class stream;

/// What a prefetch did, in pages of the range's pages().
///
/// Pages that could not move are not an error: the data stays correct
/// where it is, and a later access moves or maps it. The counts say how
/// many and why.
///
/// On a CUDA device, pages whose last prefetch (CUDA's
/// cudaMemRangeAttributeLastPrefetchLocation) was to the destination count
/// as `resident`, all others as `migrated`: CUDA does not say what moved.
struct prefetch_result {
  std::size_t pages = 0;         ///< pages of the range
  std::size_t migrated = 0;      ///< moved by this prefetch
  std::size_t resident = 0;      ///< already at the destination
  std::size_t not_present = 0;   ///< never populated (nothing to move to the CPU),
                                 ///< or no page could be allocated for the hole
  std::size_t file_backed = 0;   ///< page-cache pages of a file mapping not yet
                                 ///< written to: mm does not move those to a device
  std::size_t busy = 0;          ///< pinned, locked, under writeback or racing
                                 ///< with another migration (after one retry)
  std::size_t no_vram = 0;       ///< the device ran out of memory
  std::size_t copy_failed = 0;   ///< the copy engine failed; the data stayed put
  std::size_t other_device = 0;  ///< in another device's VRAM that could not be
                                 ///< brought back (normally they are moved via the CPU)

  /// Pages that are not at the destination afterwards for a reason other
  /// than never having been populated: file_backed + busy + no_vram +
  /// copy_failed + other_device.
  [[nodiscard]] std::size_t failed() const noexcept {
    return file_backed + busy + no_vram + copy_failed + other_device;
  }
};

/// Moves the pages of `range` to `to` and waits: to a device's VRAM
/// through its copy engine, or back to system memory (`uvm::cpu`).
///
/// Pages in another device's VRAM are moved straight across when that
/// device is a peer (device::can_access_peer(), driver 1.4) and through
/// system memory otherwise. Like cudaMemPrefetchAsync, a hint: see
/// prefetch_result for pages that stay.
///
/// @param range any memory of the process (all of it must be mapped)
/// @param to uvm::cpu, or a device that a uvm::device of this process has open
/// @return the counts of what happened.
/// @throws uvm::error errc::bad_address when part of the range is not
///         mapped (the message names the first such page);
///         errc::invalid_range when it wraps or is not user memory;
///         errc::no_device when `to` is a device that is not open, or
///         `to` is the CPU and no device is open at all;
///         errc::not_supported when the device cannot migrate;
///         errc::device_closed, errc::device_lost, errc::device_failed;
///         errc::wrong_process after fork().
/// @par Thread safety
/// Safe from any thread, also on overlapping ranges (each page moves once).
prefetch_result prefetch(memory_range range, location to);

/// prefetch(range, to), reporting errors in `ec` (cleared on success)
/// instead of throwing; the result is then all zero.
prefetch_result prefetch(memory_range range, location to, std::error_code& ec) noexcept;

/// Enqueues a prefetch of `range` to `to` on `s`: it runs after the work
/// queued on `s` before it, and the work after it waits for it.
///
/// Validation errors (errc::invalid_range, errc::no_device,
/// errc::not_supported, errc::device_closed) are thrown here; errors while
/// it runs are reported by the next synchronize() of `s` and by the
/// returned future.
///
/// @return a future of the prefetch's counts; may be discarded.
/// @par Thread safety
/// Safe from any thread; `range` must stay mapped until the prefetch ran.
std::future<prefetch_result> prefetch(memory_range range, location to, stream& s);

/// Advice for a range, as cudaMemAdvise takes it.
enum class advice {
  /// Pages prefer `loc`: device faults on them migrate them to `loc` when
  /// it is the faulting device, and map them where they lie otherwise. The
  /// CPU as preferred location keeps them in system memory.
  preferred_location,
  /// Forget the preferred location (`loc` is ignored).
  unset_preferred_location,
  /// Device `loc` accesses the pages: it maps them where they lie instead
  /// of migrating them (unless the range prefers it). Devices only.
  accessed_by,
  /// Forget device `loc` as an accessor.
  unset_accessed_by,
  /// Read-only copies of the pages on the processors that read them
  /// (cudaMemAdviseSetReadMostly) on a CUDA device (`loc` names the
  /// device). Not supported on hmmgpu (errc::not_supported): read-only
  /// copies of a page on several processors cannot be kept coherent,
  /// because the kernel cannot tell the driver of the CPU's next write to
  /// such a page.
  read_mostly,
  /// Forget read_mostly (CUDA only, as read_mostly).
  unset_read_mostly,
};

/// "preferred_location", "unset_preferred_location", "accessed_by", ...
[[nodiscard]] const char* to_string(advice a) noexcept;

/// Sets advice `a` for the pages of `range`, for the whole process (every
/// device sees it). Nothing moves when advice is set: it steers the
/// device fault service; use prefetch() to move pages. Advice is dropped
/// when the pages are unmapped, and when the last device of the process
/// that set advice is closed.
///
/// @param range any memory of the process (all of it must be mapped)
/// @param a the advice
/// @param loc uvm::cpu or a device (see each advice); a device must be open
///        in this process
/// On a CUDA device, advice belongs to the memory and lasts until it is
/// freed or unset, whatever devices are open.
///
/// @throws uvm::error errc::not_supported for read_mostly and
///         unset_read_mostly on hmmgpu (see advice::read_mostly), and for accessed_by
///         and unset_accessed_by with the CPU (the CPU always reaches every
///         page through its own page tables);
///         errc::bad_address when part of the range is not mapped (the
///         message names the first such page); errc::invalid_range;
///         errc::no_device; errc::device_closed, errc::device_lost;
///         errc::wrong_process after fork(); ENOMEM (system category).
/// @par Thread safety
/// Safe from any thread; advice on overlapping ranges from several
/// threads lands in some order.
void advise(memory_range range, advice a, location loc = cpu);

/// How the observing device maps the pages of a residency_run.
enum class device_mapping {
  none,    ///< not mapped: its next access faults
  local,   ///< its own VRAM
  peer,    ///< a peer device's VRAM, over the bus
  system,  ///< system memory, over the bus
};

/// "none", "local", "peer" or "system".
[[nodiscard]] const char* to_string(device_mapping m) noexcept;

/// Consecutive pages alike, from residency().
struct residency_run {
  memory_range pages;                             ///< the pages (page-aligned)
  std::optional<location> where;                  ///< where they are; empty: not populated
                                                  ///< (never touched, or discarded)
  device_mapping mapping = device_mapping::none;  ///< how the observer maps them
  bool writable = false;                          ///< the observer's mapping allows writes
};

/// Where the pages of `range` are, and how `observer` maps them, as runs of
/// consecutive pages alike in address order. Nothing moves: the answer may
/// be stale when it returns.
///
/// On a CUDA device, which exposes no per-page residency, `where` is where
/// the pages were last prefetched to (cudaMemRangeAttributeLastPrefetchLocation;
/// empty when they never were, or CUDA cannot tell), `mapping` is
/// device_mapping::none and `writable` false.
///
/// @return the runs covering range.pages(); empty for an empty range.
/// @throws uvm::error errc::bad_address when a page of the range is not
///         mapped (the message names it); errc::invalid_range;
///         errc::not_supported when `observer` cannot migrate;
///         errc::device_closed, errc::device_lost; errc::wrong_process.
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] std::vector<residency_run> residency(memory_range range, const device& observer);

/// Page counts of some residency runs by place.
struct residency_summary {
  std::size_t unpopulated = 0;              ///< pages not populated
  std::size_t cpu = 0;                      ///< pages in system memory
  std::vector<std::size_t> on_device;       ///< [N]: pages in /dev/hmmgpuN's VRAM
  std::vector<std::size_t> on_cuda_device;  ///< [N]: pages at CUDA device N

  /// Pages at `l`.
  [[nodiscard]] std::size_t at(location l) const noexcept;
};

/// Sums `runs` by place.
[[nodiscard]] residency_summary summarize(std::span<const residency_run> runs);

/// The advice of a range, as cudaMemRangeGetAttribute reports it: a value
/// is reported only when every page of the range has it.
struct range_advice {
  /// The preferred location all pages share; empty when none is set or
  /// the pages differ.
  std::optional<location> preferred_location;
  /// The devices that are accessed-by devices of every page, ascending.
  std::vector<location> accessed_by;
  /// Whether every page is read-mostly (CUDA); always false on hmmgpu,
  /// where read-mostly advice is not supported.
  bool read_mostly = false;
};

/// The advice set on the pages of `range`.
///
/// @throws uvm::error errc::not_supported when the driver predates uapi
///         1.4 (it cannot report advice); errc::bad_address when a page of
///         the range is not mapped; errc::invalid_range (also for an empty
///         range); errc::no_device when no device is open;
///         errc::device_closed, errc::device_lost; errc::wrong_process.
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] range_advice range_attributes(memory_range range);

}  // namespace uvm
