// SPDX-License-Identifier: GPL-2.0
// The MMU, compute engines and fault buffer of one Gpu (SPEC sections 4.5-4.8).
//
// A compute engine executes a launch one wave per step: it holds exec_mutex_ shared (so a reset
// waits for the wave) and gate_ shared (so an invalidation waits for it) while it translates the
// wave's pages and performs its elements. A wave with faults reports them and the launch stalls:
// the engine leaves the step holding nothing and waits on stall_cv_ until a replay, a cancel, an
// unbind or a reset clears its Stall. The control queue's engine never waits for a stalled one.
#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstring>
#include <shared_mutex>

#include "gpu.h"
#include "log.h"

namespace hmmgpu {

using regs::DescStatus;
namespace mmu = regs::mmu;

namespace {

constexpr uint64_t kPageMask = mmu::kPageSize - 1;
constexpr uint64_t kVpnLimit = mmu::kVaLimit >> mmu::kPageShift;

// [va, va + len) lies below 2^48; written without va + len so that nothing can overflow.
bool below_va_limit(uint64_t va, uint64_t len) {
  return va < mmu::kVaLimit && len <= mmu::kVaLimit - va;
}

uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

// ---- test seams ----

void Gpu::set_wave_hook(WaveHook hook) {
  const std::scoped_lock lock(hook_mutex_);
  has_wave_hook_.store(static_cast<bool>(hook));
  wave_hook_ = std::move(hook);
}

size_t Gpu::tlb_entries(uint32_t context, uint64_t first_vpn, uint64_t end_vpn) const {
  const std::scoped_lock lock(mmu_mutex_);
  return tlb_.count(context, first_vpn, end_vpn);
}

// ---- reset (SPEC 6) ----

// Caller holds exec_mutex_ exclusively (or no thread runs yet): no engine is inside a wave, and
// the launches themselves go with queues_ in reset_locked.
void Gpu::reset_mmu_locked() {
  {
    const std::scoped_lock lock(mmu_mutex_);
    std::fill(roots_.begin(), roots_.end(), 0);
    tlb_.clear();
    for (Stall& stall : stalls_) {
      stall = Stall{};
    }
    fault_put_ = 0;
    fault_dropped_ = 0;
    fault_status_ = 0;
    fault_stalled_ = 0;
  }
  stall_cv_.notify_all();  // stalled engines find their launch gone
  // Relaxed: reset_locked's release store of STATUS publishes them.
  page_.store64(regs::freg::kBufAddr, 0, std::memory_order_relaxed);
  for (const uint32_t reg : {regs::freg::kBufEntries, regs::freg::kGet, regs::freg::kPut,
                             regs::freg::kDropped, regs::freg::kStatus, regs::freg::kStalled}) {
    page_.store32(reg, 0, std::memory_order_relaxed);
  }
}

// ---- MMU control opcodes, queue 0 (SPEC 4.5, 4.6, 4.8) ----

DescStatus Gpu::execute_ctx_bind(const Descriptor& desc) {
  if (const DescStatus status = check_common(desc, 2); status != DescStatus::kOk) {
    return status;
  }
  const uint64_t context = desc.args[0];
  const uint64_t root = desc.args[1];
  if (root % mmu::kPageSize != 0) {
    return DescStatus::kBadAlign;
  }
  if (root != 0 && ram_.translate(root, mmu::kPageSize) == nullptr) {
    return DescStatus::kBadAddress;
  }
  if (context >= config_.contexts) {
    return DescStatus::kBadContext;
  }
  const auto ctx = static_cast<uint32_t>(context);
  const std::scoped_lock gate(gate_);  // the waves in flight finish first
  {
    const std::scoped_lock lock(mmu_mutex_);
    roots_.at(ctx) = root;
    tlb_.invalidate(ctx, 0, kVpnLimit);
    if (root == 0) {  // unbinding cancels the context's stalled launches, as cancel mode 1
      for (uint32_t q = 0; q < num_queues(); ++q) {
        const Stall& stall = stalls_.at(q);
        if (stall.stalled && stall.context == ctx) {
          cancel_stalled_locked(q, stall.pages.front());
        }
      }
    }
  }
  stall_cv_.notify_all();
  log::debug("gpu%u: context %u %s 0x%llx", config_.index, ctx, root != 0 ? "bound to" : "unbound",
             static_cast<unsigned long long>(root));
  return DescStatus::kOk;
}

DescStatus Gpu::execute_tlb_invalidate(const Descriptor& desc) {
  if (const DescStatus status = check_common(desc, 3); status != DescStatus::kOk) {
    return status;
  }
  const uint64_t context = desc.args[0];
  const uint64_t va = desc.args[1];
  const uint64_t len = desc.args[2];
  if (len == 0 && va != 0) {
    return DescStatus::kBadArg;
  }
  if (va % mmu::kPageSize != 0 || len % mmu::kPageSize != 0) {
    return DescStatus::kBadAlign;
  }
  if (!below_va_limit(va, len)) {
    return DescStatus::kBadAddress;
  }
  if (context >= config_.contexts) {
    return DescStatus::kBadContext;
  }
  const uint64_t first = va >> mmu::kPageShift;
  const uint64_t end = len == 0 ? kVpnLimit : (va + len) >> mmu::kPageShift;
  // Exclusive: no wave is executing, so none uses a translation dropped here once we release it.
  const std::scoped_lock gate(gate_);
  const std::scoped_lock lock(mmu_mutex_);
  tlb_.invalidate(static_cast<uint32_t>(context), first, end);
  return DescStatus::kOk;
}

DescStatus Gpu::execute_fault_replay(const Descriptor& desc) {
  if (const DescStatus status = check_common(desc, 0); status != DescStatus::kOk) {
    return status;
  }
  {
    const std::scoped_lock lock(mmu_mutex_);
    ++replay_gen_;  // a wave translating now retries instead of stalling
    for (Stall& stall : stalls_) {
      stall = Stall{};  // its launch stays in queues_ and retries the wave
    }
    fault_status_ = 0;
    fault_stalled_ = 0;
    page_.store32(regs::freg::kStatus, 0, std::memory_order_relaxed);
    // Release: the replay's own completion comes after; the engines wake below.
    page_.store32(regs::freg::kStalled, 0, std::memory_order_release);
  }
  stall_cv_.notify_all();
  return DescStatus::kOk;
}

DescStatus Gpu::execute_fault_cancel(const Descriptor& desc) {
  if (const DescStatus status = check_common(desc, 4); status != DescStatus::kOk) {
    return status;
  }
  using namespace regs::fault;
  const uint64_t context = desc.args[0];
  const uint64_t va = desc.args[1];
  const uint64_t mode = desc.args[2];
  const uint64_t id = desc.args[3];
  if (mode > kCancelStall || (mode == kCancelContext && va != 0) ||
      (mode != kCancelStall && id != 0)) {
    return DescStatus::kBadArg;
  }
  if (va % mmu::kPageSize != 0) {
    return DescStatus::kBadAlign;
  }
  if (va >= mmu::kVaLimit) {
    return DescStatus::kBadAddress;
  }
  if (context >= config_.contexts) {
    return DescStatus::kBadContext;
  }
  {
    const std::scoped_lock lock(mmu_mutex_);
    for (uint32_t q = 0; q < num_queues(); ++q) {
      const Stall& stall = stalls_.at(q);
      if (!stall.stalled || stall.context != context) {
        continue;
      }
      if (mode == kCancelContext) {
        cancel_stalled_locked(q, stall.pages.front());
      } else if ((mode == kCancelPage || stall.id == id) &&
                 std::binary_search(stall.pages.begin(), stall.pages.end(), va)) {
        cancel_stalled_locked(q, va);
      }
    }
  }
  stall_cv_.notify_all();
  return DescStatus::kOk;
}

// The Stall was set, so the queue's engine is not touching its QueueState: complete the launch
// here, on the control queue's engine, before the cancel (or unbind) itself completes.
void Gpu::cancel_stalled_locked(uint32_t queue, uint64_t va) {
  stalls_.at(queue) = Stall{};
  fault_stalled_ &= ~(1U << queue);
  page_.store32(regs::freg::kStalled, fault_stalled_, std::memory_order_release);
  finish_launch(queue, DescStatus::kMmuFault, va);
}

// ---- compute engine (SPEC 4.7) ----

void Gpu::start_launch(uint32_t queue, uint32_t slot_off, const Descriptor& desc) {
  QueueState& state = queues_.at(queue);
  state.launch.emplace();
  state.launch->desc = desc;
  state.launch->slot_off = slot_off;
  uint64_t fail_va = 0;
  const DescStatus status = check_launch(desc, *state.launch, fail_va);
  if (status != DescStatus::kOk) {
    finish_launch(queue, status, fail_va);
    return;
  }
  const Launch& launch = *state.launch;
  log::debug("gpu%u: queue %u launch %s context %u count %llu", config_.index, queue,
             launch.kernel->name, launch.context, static_cast<unsigned long long>(launch.count));
}

// SPEC 4.7 checks 1-6, in order; fills in `launch`. `fail_va` is ARG5 for a failure.
DescStatus Gpu::check_launch(const Descriptor& desc, Launch& launch, uint64_t& fail_va) {
  using namespace regs::launch;
  if ((desc.flags & ~regs::kFlagsValidMask) != 0) {
    return DescStatus::kBadFlags;
  }
  const uint64_t context = desc.args[0] & kContextMask;
  const KernelInfo* kernel = find_kernel(static_cast<uint32_t>(desc.args[0] >> kKernelShift));
  const uint64_t count = desc.args[1];
  const uint64_t va0 = desc.args[2];
  const uint64_t va1 = desc.args[3];
  const uint64_t scalar = desc.args[4];
  if (desc.args[kArgResult] != 0 || kernel == nullptr) {
    return DescStatus::kBadArg;
  }
  const uint64_t size = kernel->size;
  if (count == 0 || count > kMaxBytes / size || (!kernel->has_y && va1 != 0) ||
      (!kernel->has_scalar && scalar != 0) || (scalar >> 32U) != 0) {
    return DescStatus::kBadArg;
  }
  if (va0 % size != 0 || va1 % size != 0) {
    fail_va = va0 % size != 0 ? va0 : va1;
    return DescStatus::kBadAlign;
  }
  const uint64_t bytes = count * size;  // <= 256 MiB
  if (!below_va_limit(va0, bytes) || (kernel->has_y && !below_va_limit(va1, bytes))) {
    fail_va = below_va_limit(va0, bytes) ? va1 : va0;
    return DescStatus::kBadAddress;
  }
  if (kernel->id == kCopy && va0 < va1 + bytes && va1 < va0 + bytes) {  // both below 2^48
    fail_va = va0;
    return DescStatus::kOverlap;
  }
  if (context >= config_.contexts) {
    return DescStatus::kBadContext;
  }
  {
    const std::scoped_lock lock(mmu_mutex_);
    if (roots_.at(context) == 0) {
      return DescStatus::kBadContext;
    }
  }
  launch.context = static_cast<uint32_t>(context);
  launch.kernel = kernel;
  launch.count = count;
  launch.va0 = va0;
  launch.va1 = va1;
  launch.scalar = static_cast<uint32_t>(scalar);
  launch.acc = kernel_start(*kernel);
  return DescStatus::kOk;
}

// Writes ARG5, completes the launch (SPEC 4.3) and forgets it. Caller holds exec_mutex_ (shared)
// and owns the queue's QueueState.
void Gpu::finish_launch(uint32_t queue, DescStatus status, uint64_t arg5) {
  QueueState& state = queues_.at(queue);
  const Launch& launch = *state.launch;
  // Relaxed: the release store of STATUS in complete() publishes it.
  page_.store64(launch.slot_off + regs::desc::kArg0 + 8 * regs::launch::kArgResult, arg5,
                std::memory_order_relaxed);
  if (status == DescStatus::kMmuFault) {
    log::debug("gpu%u: queue %u launch cancelled at 0x%llx", config_.index, queue,
               static_cast<unsigned long long>(arg5));
  } else if (status != DescStatus::kOk) {
    log::guest_error("gpu%u: queue %u launch descriptor %u: %s (ARG5 0x%llx)", config_.index, queue,
                     state.tail, status_name(status), static_cast<unsigned long long>(arg5));
  }
  complete(queue, launch.slot_off, launch.desc, status);
  state.launch.reset();
}

// Executes the next wave of the queue's launch (SPEC 4.7 steps 1-3): kMore, or kStalled.
Gpu::Step Gpu::run_wave(uint32_t queue) {
  Launch& launch = *queues_.at(queue).launch;
  const KernelInfo& kernel = *launch.kernel;
  const uint64_t size = kernel.size;
  const uint64_t begin = launch.done;
  const uint64_t end = std::min(launch.count, begin + regs::launch::kWaveBytes / size);

  std::shared_lock gate(gate_);
  uint64_t root = 0;
  uint64_t gen = 0;
  {
    const std::scoped_lock lock(mmu_mutex_);
    root = roots_.at(launch.context);
    gen = replay_gen_;
  }
  if (root == 0) {  // unbound since the launch began
    gate.unlock();
    finish_launch(queue, DescStatus::kBadContext, 0);
    return Step::kMore;
  }

  std::vector<WavePage> pages = wave_pages(launch, begin, end);
  std::vector<PageFault> faults;
  for (WavePage& page : pages) {
    const PageResult result = translate_page(launch.context, root, page.vpn, page.write);
    if (result.status != DescStatus::kOk) {
      gate.unlock();
      finish_launch(queue, result.status, page.vpn << mmu::kPageShift);
      return Step::kMore;
    }
    if (result.fault_type) {
      faults.push_back(
          PageFault{.va = page.vpn << mmu::kPageShift,
                    .access = page.write ? regs::fault::kAccessWrite : regs::fault::kAccessRead,
                    .type = *result.fault_type});
    } else {
      page.translation = result.translation;
    }
  }
  if (!faults.empty()) {
    // Still holding the gate: an unbind cannot slip between this wave and its stall.
    const std::scoped_lock lock(mmu_mutex_);
    if (replay_gen_ != gen) {
      return Step::kMore;  // a replay ran while we translated: translate again at once
    }
    report_faults_locked(queue, launch.context, faults);
    return Step::kStalled;  // the QueueState is not ours until the Stall clears
  }

  if (has_wave_hook_.load()) {
    WaveHook hook;
    {
      const std::scoped_lock lock(hook_mutex_);
      hook = wave_hook_;
    }
    if (hook) {
      hook(queue);
    }
  }
  perform_wave(launch, pages, begin, end);
  gate.unlock();
  launch.done = end;
  if (end == launch.count) {
    finish_launch(queue, DescStatus::kOk, kernel_result(kernel, launch.acc));
  }
  return Step::kMore;
}

std::vector<Gpu::WavePage> Gpu::wave_pages(const Launch& launch, uint64_t begin, uint64_t end) {
  const KernelInfo& kernel = *launch.kernel;
  std::vector<WavePage> pages;
  const auto add_operand = [&](uint64_t va, bool write) {
    const uint64_t first = (va + begin * kernel.size) >> mmu::kPageShift;
    const uint64_t last = (va + end * kernel.size - 1) >> mmu::kPageShift;
    for (uint64_t vpn = first; vpn <= last; ++vpn) {
      pages.push_back(WavePage{.vpn = vpn, .write = write, .translation = {}});
    }
  };
  add_operand(launch.va0, kernel.writes_x);
  if (kernel.has_y) {
    add_operand(launch.va1, false);
  }
  std::sort(pages.begin(), pages.end(),
            [](const WavePage& a, const WavePage& b) { return a.vpn < b.vpn; });
  // A page of both operands is one page, written when either operand writes it.
  std::vector<WavePage> merged;
  for (const WavePage& page : pages) {
    if (!merged.empty() && merged.back().vpn == page.vpn) {
      merged.back().write = merged.back().write || page.write;
    } else {
      merged.push_back(page);
    }
  }
  return merged;
}

void Gpu::perform_wave(Launch& launch, const std::vector<WavePage>& pages, uint64_t begin,
                       uint64_t end) {
  const KernelInfo& kernel = *launch.kernel;
  const uint64_t size = kernel.size;
  const auto host = [&](uint64_t va) {
    const auto it =
        std::lower_bound(pages.begin(), pages.end(), va >> mmu::kPageShift,
                         [](const WavePage& page, uint64_t vpn) { return page.vpn < vpn; });
    return it->translation.page + (va & kPageMask);  // every page of the wave is there
  };
  // Runs of elements that stay inside one page of each operand.
  for (uint64_t i = begin; i < end;) {
    const uint64_t x = launch.va0 + i * size;
    uint64_t n = std::min(end - i, (mmu::kPageSize - (x & kPageMask)) / size);
    const std::byte* y = nullptr;
    if (kernel.has_y) {
      const uint64_t y_va = launch.va1 + i * size;
      n = std::min(n, (mmu::kPageSize - (y_va & kPageMask)) / size);
      y = host(y_va);
    }
    run_kernel(kernel, host(x), y, n, launch.scalar, launch.acc);
    i += n;
  }
}

// TLB, else a walk (SPEC 4.5, 4.6). Caller holds gate_ shared, so no invalidation runs meanwhile
// and `root` stays the context's root.
Gpu::PageResult Gpu::translate_page(uint32_t context, uint64_t root, uint64_t vpn, bool write) {
  {
    const std::scoped_lock lock(mmu_mutex_);
    if (const std::optional<Translation> hit = tlb_.lookup(context, vpn)) {
      if (write && !hit->writable) {
        tlb_.drop(context, vpn);  // the replayed access walks again
        return PageResult{.status = DescStatus::kOk,
                          .fault_type = regs::fault::kTypeWriteProtected,
                          .translation = {}};
      }
      return PageResult{.status = DescStatus::kOk, .fault_type = std::nullopt, .translation = *hit};
    }
  }
  const Walk walk = walk_page_table(ram_, root, vpn << mmu::kPageShift);
  if (walk.kind == Walk::Kind::kNotPresent) {
    return PageResult{
        .status = DescStatus::kOk, .fault_type = regs::fault::kTypeNotPresent, .translation = {}};
  }
  if (walk.kind == Walk::Kind::kError) {
    return PageResult{.status = walk.status, .fault_type = std::nullopt, .translation = {}};
  }
  Translation translation;
  if (const DescStatus status = resolve_leaf(walk.leaf, translation); status != DescStatus::kOk) {
    return PageResult{.status = status, .fault_type = std::nullopt, .translation = {}};
  }
  if (write && !translation.writable) {  // not cached: the replay walks again
    return PageResult{.status = DescStatus::kOk,
                      .fault_type = regs::fault::kTypeWriteProtected,
                      .translation = {}};
  }
  const std::scoped_lock lock(mmu_mutex_);
  tlb_.insert(context, vpn, translation);
  return PageResult{
      .status = DescStatus::kOk, .fault_type = std::nullopt, .translation = translation};
}

// Where a leaf entry points (SPEC 4.5, the checks after ST_BAD_PTE).
DescStatus Gpu::resolve_leaf(uint64_t leaf, Translation& out) const {
  using regs::copy::kApPeer;
  using regs::copy::kApSysmem;
  using regs::copy::kApVram;
  const uint64_t addr = leaf & mmu::kAddrMask;
  const uint64_t aperture = (leaf >> mmu::kApShift) & mmu::kApMask;
  const auto peer = static_cast<uint32_t>((leaf >> mmu::kPeerShift) & mmu::kPeerMask);
  std::byte* page = nullptr;
  if (aperture == kApSysmem) {
    page = ram_.translate(addr, mmu::kPageSize);
    if (page == nullptr) {
      return DescStatus::kBadAddress;
    }
  } else if (aperture == kApVram) {
    page = vram_at(addr, mmu::kPageSize);
    if (page == nullptr) {
      return DescStatus::kBadVram;
    }
  } else if (aperture == kApPeer) {
    const Gpu* gpu = peer != config_.index && peers_ ? peers_(peer) : nullptr;
    if (gpu == nullptr || gpu == this) {
      return DescStatus::kBadPeer;
    }
    page = gpu->vram_at(addr, mmu::kPageSize);
    if (page == nullptr) {
      return DescStatus::kBadVram;
    }
  } else {
    return DescStatus::kBadPte;  // aperture 3: rejected by the walk already
  }
  out = Translation{.page = page, .writable = (leaf & mmu::kWrite) != 0};
  return DescStatus::kOk;
}

// ---- replayable faults (SPEC 4.8) ----

void Gpu::report_faults_locked(uint32_t queue, uint32_t context,
                               const std::vector<PageFault>& faults) {
  Stall& stall = stalls_.at(queue);
  stall.stalled = true;
  stall.context = context;
  stall.id = ++stall_seq_;
  stall.pages.clear();
  for (const PageFault& fault : faults) {  // ascending VA
    write_fault_entry_locked(queue, context, stall.id, fault.va, fault.access, fault.type);
    stall.pages.push_back(fault.va);
  }
  fault_stalled_ |= 1U << queue;
  // Release: after the entries, FAULT_PUT and FAULT_DROPPED.
  page_.store32(regs::freg::kStalled, fault_stalled_, std::memory_order_release);
  raise_irq_locked(fault_vector());
  log::debug("gpu%u: queue %u stalled on %zu fault(s) from 0x%llx", config_.index, queue,
             faults.size(), static_cast<unsigned long long>(faults.front().va));
}

void Gpu::write_fault_entry_locked(uint32_t queue, uint32_t context, uint64_t stall, uint64_t va,
                                   uint8_t access, uint8_t type) {
  using namespace regs::fault;
  // Acquire on ENTRIES pairs with the driver's barrier after writing FAULT_BUF_ADDR; acquire on
  // GET with its reads of the entries it consumed.
  const uint32_t entries = page_.load32(regs::freg::kBufEntries, std::memory_order_acquire);
  const uint64_t base = page_.load64(regs::freg::kBufAddr, std::memory_order_relaxed);
  const uint32_t get = page_.load32(regs::freg::kGet, std::memory_order_acquire);
  std::byte* buf = nullptr;
  if (std::has_single_bit(entries) && entries <= kMaxEntries && base % kBufAlign == 0) {
    buf = ram_.translate(base, uint64_t{entries} * kEntrySize);  // no overflow: <= 2 MiB
  }
  uint32_t drop = 0;
  if (buf == nullptr) {
    drop = regs::freg::kStatusBadConfig;
  } else if (fault_put_ - get >= entries) {
    drop = regs::freg::kStatusOverflow;
  }
  if (drop != 0) {
    ++fault_dropped_;
    fault_status_ |= drop;
    page_.store32(regs::freg::kDropped, fault_dropped_, std::memory_order_relaxed);
    page_.store32(regs::freg::kStatus, fault_status_, std::memory_order_release);
    log::debug("gpu%u: fault at 0x%llx dropped (%s)", config_.index,
               static_cast<unsigned long long>(va),
               drop == regs::freg::kStatusOverflow ? "buffer full" : "no valid buffer");
    return;
  }
  std::array<std::byte, kEntrySize> entry{};
  const uint64_t timestamp = now_ns();
  const auto engine = static_cast<uint16_t>(queue);
  std::memcpy(entry.data() + kVa, &va, sizeof(va));
  std::memcpy(entry.data() + kContext, &context, sizeof(context));
  std::memcpy(entry.data() + kAccess, &access, sizeof(access));
  std::memcpy(entry.data() + kType, &type, sizeof(type));
  std::memcpy(entry.data() + kEngine, &engine, sizeof(engine));
  std::memcpy(entry.data() + kTimestamp, &timestamp, sizeof(timestamp));
  std::memcpy(entry.data() + kStall, &stall, sizeof(stall));
  std::memcpy(buf + uint64_t{fault_put_ & (entries - 1)} * kEntrySize, entry.data(), entry.size());
  // Release: the entry is visible before the new FAULT_PUT.
  page_.store32(regs::freg::kPut, ++fault_put_, std::memory_order_release);
}

bool Gpu::stalled(uint32_t queue) const {
  const std::scoped_lock lock(mmu_mutex_);
  return stalls_.at(queue).stalled;
}

bool Gpu::wait_unstalled(uint32_t queue) {
  std::unique_lock lock(mmu_mutex_);
  stall_cv_.wait(lock, [&] { return !stalls_.at(queue).stalled || stopping_; });
  return !stopping_;
}

}  // namespace hmmgpu
