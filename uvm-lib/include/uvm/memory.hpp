// SPDX-License-Identifier: GPL-2.0
/// @file uvm/memory.hpp
/// @brief Managed memory: uvm::managed_resource, uvm::managed_allocator,
/// uvm::managed_vector and uvm::make_managed.
///
/// Under HMM the devices mirror the whole address space of the process:
/// *every* allocation is managed memory, and every function of the library
/// takes ordinary memory too (`malloc`, `new`, `std::vector`, private file
/// mappings). What the types here add is page granularity and initial
/// advice: each allocation is its own anonymous mapping of whole pages
/// (so a prefetch or advice of one allocation never moves another's data),
/// optionally advised at allocation time (see managed_resource).
///
/// **CUDA.** While a CUDA device and no hmmgpu device is open in the
/// process, allocations are CUDA managed memory instead
/// (cudaMallocManaged(), page-aligned, whole pages): the memory every CUDA
/// device can use, with or without pageable memory access. (hmmgpu
/// devices cannot move CUDA's managed memory: a process using both kinds
/// of device gets anonymous mappings, which CUDA devices use where they
/// have pageable memory access.) Open the device before allocating.
///
/// @code
/// uvm::device gpu(0);
/// uvm::managed_vector<float> v(1 << 20, 1.0F);        // page-aligned, on the CPU
/// auto a = uvm::make_managed<std::uint32_t[]>(4096);  // value-initialised
/// uvm::managed_resource near_gpu({.preferred_location = gpu});
/// std::deque<int, uvm::managed_allocator<int>> d{uvm::managed_allocator<int>(near_gpu)};
/// std::pmr::vector<double> p(&near_gpu);               // also a std::pmr::memory_resource
/// @endcode
#pragma once

#include <cstddef>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "uvm/location.hpp"

namespace uvm {

/// Advice applied to every allocation of a managed_resource, as
/// uvm::advise() would (see uvm/hints.hpp).
struct allocation_advice {
  /// Where the pages prefer to be (advice::preferred_location), or none.
  std::optional<location> preferred_location;
  /// Devices that access the pages (advice::accessed_by); devices only.
  std::vector<location> accessed_by;
};

/// A memory resource of page-aligned anonymous mappings (or CUDA managed
/// memory, see above), each allocation its own mapping of whole pages,
/// advised at allocation when the resource has advice. Derives from `std::pmr::memory_resource`, so
/// it also serves `std::pmr` containers; uvm::managed_allocator is its typed front end.
///
/// Allocation throws `std::bad_alloc` when the mapping fails, and
/// uvm::error when the advice fails (e.g. errc::no_device when a location
/// names a device no uvm::device of the process has open); the mapping is
/// then released. Alignments up to the page size are honoured (larger:
/// `std::bad_alloc`).
///
/// Resources are equal only to themselves: memory allocated by one must be
/// freed by the same one. The resource must outlive its allocations.
///
/// @par Thread safety
/// allocate() and deallocate() may be called from several threads at once.
class managed_resource : public std::pmr::memory_resource {
 public:
  /// A resource without advice: pages start wherever first touch puts
  /// them (the CPU for a CPU write, the device for a kernel).
  managed_resource() = default;
  /// A resource that applies `advice` to every allocation.
  explicit managed_resource(allocation_advice advice);
  ~managed_resource() override = default;
  managed_resource(const managed_resource&) = delete;
  managed_resource& operator=(const managed_resource&) = delete;
  managed_resource(managed_resource&&) = delete;
  managed_resource& operator=(managed_resource&&) = delete;

  /// The advice applied to each allocation.
  [[nodiscard]] const allocation_advice& advice() const noexcept { return advice_; }

 protected:
  /// An anonymous mapping of `bytes` rounded up to pages (a page for 0).
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  /// Unmaps what do_allocate() returned for the same `bytes`.
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  /// Identity.
  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override;

 private:
  allocation_advice advice_;
};

/// The resource without advice that default-constructed allocators use.
///
/// @return a process-wide resource that lives until exit.
/// @par Thread safety
/// Safe from any thread.
[[nodiscard]] managed_resource& default_managed_resource() noexcept;

/// A standard allocator of managed memory: each allocate() is a
/// page-aligned mapping of its own from a managed_resource (by default
/// default_managed_resource()). Works with every standard container.
///
/// Equality means "same resource": memory from one allocator may be freed
/// by an equal one. Copies and rebinds share the resource, which must
/// outlive them.
///
/// @par Thread safety
/// As its resource: allocate() and deallocate() may run concurrently.
template <class T>
class managed_allocator {
 public:
  using value_type = T;  ///< the element type
  /// Copy assignment of a container carries the resource along.
  using propagate_on_container_copy_assignment = std::true_type;
  /// Move assignment of a container carries the resource along.
  using propagate_on_container_move_assignment = std::true_type;
  /// Swapping containers swaps their resources.
  using propagate_on_container_swap = std::true_type;

  /// An allocator of default_managed_resource().
  managed_allocator() noexcept : resource_(&default_managed_resource()) {}
  /// An allocator of `r`, which must outlive it and its copies.
  explicit managed_allocator(managed_resource& r) noexcept : resource_(&r) {}
  /// The allocator of `other`'s resource for another type.
  template <class U>
  managed_allocator(
      const managed_allocator<U>& other) noexcept  // NOLINT(google-explicit-constructor)
      : resource_(other.resource()) {}

  /// Storage for `n` objects of T, uninitialised.
  /// @throws std::bad_alloc; uvm::error when the resource's advice fails.
  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) {
      throw std::bad_array_new_length();
    }
    return static_cast<T*>(resource_->allocate(n * sizeof(T), alignof(T)));
  }
  /// Frees what allocate(`n`) returned.
  void deallocate(T* p, std::size_t n) noexcept {
    resource_->deallocate(p, n * sizeof(T), alignof(T));
  }

  /// The resource.
  [[nodiscard]] managed_resource* resource() const noexcept { return resource_; }

  /// Same resource.
  template <class U>
  friend bool operator==(const managed_allocator& a, const managed_allocator<U>& b) noexcept {
    return a.resource() == b.resource();
  }

 private:
  managed_resource* resource_;
};

/// A `std::vector` of managed memory.
template <class T>
using managed_vector = std::vector<T, managed_allocator<T>>;

template <class T>
class managed_deleter;

/// The deleter of make_managed<T[]>(): destroys the `size()` elements and
/// frees the memory to its resource.
template <class T>
class managed_deleter<T[]> {  // NOLINT(cppcoreguidelines-avoid-c-arrays,modernize-avoid-c-arrays)
 public:
  /// A deleter for nothing (of a null pointer).
  managed_deleter() noexcept = default;
  /// A deleter for `n` elements from `r`.
  managed_deleter(std::size_t n, managed_resource* r) noexcept : n_(n), resource_(r) {}

  /// Destroys and frees the array at `p` (nothing for null).
  void operator()(T* p) const noexcept {
    if (p == nullptr) {
      return;
    }
    std::destroy_n(p, n_);
    managed_allocator<T>(*resource_).deallocate(p, n_);
  }
  /// Elements of the array.
  [[nodiscard]] std::size_t size() const noexcept { return n_; }

 private:
  std::size_t n_ = 0;
  managed_resource* resource_ = nullptr;
};

/// A managed array of `n` value-initialised T (zeros for arithmetic T),
/// page-aligned, owned by a `std::unique_ptr` whose deleter frees it.
///
/// @code
/// auto x = uvm::make_managed<float[]>(n);   // x.get(), x[i], x.get_deleter().size()
/// @endcode
/// @param n elements (0 gives a page-aligned allocation of no elements)
/// @param r the resource (default_managed_resource() by default)
/// @throws std::bad_alloc; uvm::error when the resource's advice fails;
///         whatever T's constructor throws (the memory is freed).
template <class T>
[[nodiscard]] std::unique_ptr<T, managed_deleter<T>> make_managed(
    std::size_t n, managed_resource& r = default_managed_resource()) {
  static_assert(std::is_unbounded_array_v<T>, "make_managed<T[]>(n) makes arrays only");
  using E = std::remove_extent_t<T>;
  managed_allocator<E> alloc(r);
  E* p = alloc.allocate(n);
  try {
    std::uninitialized_value_construct_n(p, n);
  } catch (...) {
    alloc.deallocate(p, n);
    throw;
  }
  return std::unique_ptr<T, managed_deleter<T>>(p, managed_deleter<T>(n, &r));
}

}  // namespace uvm
