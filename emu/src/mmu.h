// SPDX-License-Identifier: GPL-2.0
// The device MMU's parts that do not depend on a Gpu (SPEC sections 4.5, 4.6): the page-table
// walk over guest RAM and the TLB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "guest_ram.h"
#include "regs.h"

namespace hmmgpu {

// A successful translation: the host address of the 4 KiB page and its WRITE bit.
struct Translation {
  std::byte* page = nullptr;
  bool writable = false;
};

// The TLB: direct-mapped, kTlbEntries slots indexed by context and VA page; a new translation
// evicts the one in its slot. Not thread-safe (the Gpu guards it with its MMU mutex).
class Tlb {
 public:
  Tlb();
  [[nodiscard]] std::optional<Translation> lookup(uint32_t context, uint64_t vpn) const;
  void insert(uint32_t context, uint64_t vpn, Translation translation);
  void drop(uint32_t context, uint64_t vpn);
  // Drops every entry of `context` with a VA page in [first_vpn, end_vpn).
  void invalidate(uint32_t context, uint64_t first_vpn, uint64_t end_vpn);
  void clear();
  // Entries of `context` with a VA page in [first_vpn, end_vpn) (for checks).
  [[nodiscard]] size_t count(uint32_t context, uint64_t first_vpn, uint64_t end_vpn) const;

 private:
  struct Entry {
    bool valid = false;
    uint32_t context = 0;
    uint64_t vpn = 0;
    Translation translation;
  };
  [[nodiscard]] static size_t slot(uint32_t context, uint64_t vpn);

  std::vector<Entry> entries_;
};

// The outcome of a page-table walk for one VA (SPEC 4.5).
struct Walk {
  enum class Kind { kLeaf, kNotPresent, kError };
  Kind kind = Kind::kNotPresent;
  regs::DescStatus status = regs::DescStatus::kOk;  // with kError
  uint64_t leaf = 0;  // with kLeaf: the leaf entry, its reserved bits checked
};

// Walks the 4-level table at guest physical `root` for `va` (< 2^48), reading each entry with
// one 8-byte atomic load. Checks directory entries completely and the leaf's reserved bits; the
// caller checks where the leaf points (its aperture).
[[nodiscard]] Walk walk_page_table(const GuestRam& ram, uint64_t root, uint64_t va);

}  // namespace hmmgpu
