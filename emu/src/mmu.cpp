// SPDX-License-Identifier: GPL-2.0
#include "mmu.h"

#include <atomic>

namespace hmmgpu {

using regs::DescStatus;

// ---- Tlb ----

Tlb::Tlb() : entries_(regs::mmu::kTlbEntries) {}

size_t Tlb::slot(uint32_t context, uint64_t vpn) {
  // Consecutive pages of one context take consecutive slots; contexts are spread apart.
  return static_cast<size_t>((vpn + uint64_t{context} * 0x9e3779b1ULL) &
                             (regs::mmu::kTlbEntries - 1));
}

std::optional<Translation> Tlb::lookup(uint32_t context, uint64_t vpn) const {
  const Entry& entry = entries_[slot(context, vpn)];
  if (entry.valid && entry.context == context && entry.vpn == vpn) {
    return entry.translation;
  }
  return std::nullopt;
}

void Tlb::insert(uint32_t context, uint64_t vpn, Translation translation) {
  entries_[slot(context, vpn)] =
      Entry{.valid = true, .context = context, .vpn = vpn, .translation = translation};
}

void Tlb::drop(uint32_t context, uint64_t vpn) {
  Entry& entry = entries_[slot(context, vpn)];
  if (entry.valid && entry.context == context && entry.vpn == vpn) {
    entry = Entry{};
  }
}

void Tlb::invalidate(uint32_t context, uint64_t first_vpn, uint64_t end_vpn) {
  for (Entry& entry : entries_) {
    if (entry.valid && entry.context == context && entry.vpn >= first_vpn && entry.vpn < end_vpn) {
      entry = Entry{};
    }
  }
}

void Tlb::clear() {
  for (Entry& entry : entries_) {
    entry = Entry{};
  }
}

size_t Tlb::count(uint32_t context, uint64_t first_vpn, uint64_t end_vpn) const {
  size_t n = 0;
  for (const Entry& entry : entries_) {
    n += entry.valid && entry.context == context && entry.vpn >= first_vpn && entry.vpn < end_vpn
             ? 1
             : 0;
  }
  return n;
}

// ---- page-table walk ----

Walk walk_page_table(const GuestRam& ram, uint64_t root, uint64_t va) {
  using namespace regs::mmu;
  uint64_t table = root;
  for (uint32_t level = kLevels; level-- > 0;) {
    // The root was checked by OP_CTX_BIND; a next-level table outside RAM is the directory
    // entry's error.
    std::byte* base = ram.translate(table, kPageSize);
    if (base == nullptr) {
      return Walk{.kind = Walk::Kind::kError, .status = DescStatus::kBadAddress, .leaf = 0};
    }
    // The driver writes an entry with one 8-byte store; a relaxed atomic load never tears it.
    // Ordered after the driver's stores by the acquire load of HEAD that brought the work here.
    auto* slot = reinterpret_cast<uint64_t*>(base + table_index(va, level) * kEntrySize);
    const uint64_t entry = std::atomic_ref<uint64_t>(*slot).load(std::memory_order_relaxed);
    if ((entry & kValid) == 0) {
      return Walk{.kind = Walk::Kind::kNotPresent, .status = DescStatus::kOk, .leaf = 0};
    }
    if (level == 0) {
      const uint64_t aperture = (entry >> kApShift) & kApMask;
      const uint64_t peer = (entry >> kPeerShift) & kPeerMask;
      if ((entry & ~kLeafValidMask) != 0 || aperture == 3 ||
          (peer != 0 && aperture != regs::copy::kApPeer)) {
        return Walk{.kind = Walk::Kind::kError, .status = DescStatus::kBadPte, .leaf = 0};
      }
      return Walk{.kind = Walk::Kind::kLeaf, .status = DescStatus::kOk, .leaf = entry};
    }
    if ((entry & ~kDirValidMask) != 0) {  // LARGE included: reserved in 1.2
      return Walk{.kind = Walk::Kind::kError, .status = DescStatus::kBadPte, .leaf = 0};
    }
    table = entry & kAddrMask;  // checked to lie in guest RAM at the top of the loop
  }
  return Walk{};  // not reached: level 0 always returns
}

}  // namespace hmmgpu
