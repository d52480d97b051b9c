// SPDX-License-Identifier: GPL-2.0
// uvm::managed_resource: page-aligned anonymous mappings (or a provider's
// managed memory, CUDA's), advised at allocation.
#include "uvm/memory.hpp"

#include <sys/mman.h>

#include <new>
#include <utility>

#include "detail.hpp"
#include "uvm/hints.hpp"

namespace uvm {
namespace {

std::size_t round_to_pages(std::size_t bytes) {
  const std::size_t ps = page_size();
  if (bytes == 0) {
    return ps;
  }
  if (bytes > static_cast<std::size_t>(-1) - ps) {
    throw std::bad_alloc();
  }
  return (bytes + ps - 1) & ~(ps - 1);
}

// `len` bytes from the provider that allocates managed memory now, or an
// anonymous mapping.
void* allocate_pages(std::size_t len) {
  for (detail::provider_impl* p : detail::providers()) {
    if (void* m = p->allocate_managed(len)) {
      return m;
    }
  }
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    throw std::bad_alloc();
  }
  return p;
}

void free_pages(void* p, std::size_t len) noexcept {
  for (detail::provider_impl* prov : detail::providers()) {
    if (prov->free_managed(p)) {
      return;
    }
  }
  ::munmap(p, len);
}

}  // namespace

managed_resource::managed_resource(allocation_advice advice) : advice_(std::move(advice)) {}

void* managed_resource::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment > page_size()) {
    throw std::bad_alloc();
  }
  const std::size_t len = round_to_pages(bytes);
  void* p = allocate_pages(len);
  try {
    const memory_range r(p, len);
    if (advice_.preferred_location) {
      advise(r, advice::preferred_location, *advice_.preferred_location);
    }
    for (const location& l : advice_.accessed_by) {
      advise(r, advice::accessed_by, l);
    }
  } catch (...) {
    free_pages(p, len);
    throw;
  }
  return p;
}

void managed_resource::do_deallocate(void* p, std::size_t bytes, std::size_t /*alignment*/) {
  if (p != nullptr) {
    free_pages(p, round_to_pages(bytes));
  }
}

bool managed_resource::do_is_equal(const std::pmr::memory_resource& other) const noexcept {
  return this == &other;
}

managed_resource& default_managed_resource() noexcept {
  static managed_resource r;
  return r;
}

}  // namespace uvm
