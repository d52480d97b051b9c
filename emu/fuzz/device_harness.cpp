// SPDX-License-Identifier: GPL-2.0
#include "device_harness.h"

#include <sanitizer/asan_interface.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "gpu.h"
#include "guest_ram.h"
#include "input.h"
#include "regs.h"

namespace hmmgpu::fuzz {
namespace {

using regs::DescStatus;

constexpr uint32_t kGpus = 2;
constexpr uint64_t kPage = regs::mmu::kPageSize;
// Work per input, in steps: a descriptor or a wave is one, and a copy one more per MiB it moved.
// Bounds an input's run time, since valid work may legitimately keep an engine busy for long
// (an OP_COPY_LIST of 4096 large blocks).
constexpr uint64_t kMaxSteps = 1024;
constexpr uint32_t kCopyStepShift = 20;
constexpr size_t kGuard = 4096;
constexpr auto kGuardByte = std::byte{0xa5};

// The memories of a device shape: guest RAM and each GPU's VRAM. Small, so that their edges are
// easy to hit and the largest valid copies stay cheap; some sizes not multiples of a page.
struct Memories {
  uint64_t ram;
  uint64_t vram;
};
constexpr std::array<Memories, 4> kMemories{{
    {.ram = 128 << 10, .vram = 64 << 10},
    {.ram = (128 << 10) + 100, .vram = (64 << 10) + 8},
    {.ram = 64 << 10, .vram = 16 << 10},
    {.ram = 256 << 10, .vram = 8 << 10},
}};

[[noreturn]] void violation(const char* what, unsigned long long where) {
  std::fprintf(stderr, "hmmgpu fuzz: VIOLATION: %s (0x%llx)\n", what, where);
  std::abort();
}

// A heap buffer of exactly size() usable bytes between two guard zones: AddressSanitizer reports
// any access to a guard zone, and check() finds one that changed without it. Kept from one input
// to the next (allocating megabytes per input would dominate the fuzzer's time).
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t size) : size_(size), buf_(size + 2 * kGuard) {
    std::fill_n(buf_.begin(), kGuard, kGuardByte);
    std::fill_n(buf_.begin() + static_cast<ptrdiff_t>(kGuard + size), kGuard, kGuardByte);
    poison();
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  GuardedBuffer(GuardedBuffer&&) = delete;
  GuardedBuffer& operator=(GuardedBuffer&&) = delete;
  ~GuardedBuffer() { ASAN_UNPOISON_MEMORY_REGION(buf_.data(), buf_.size()); }

  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] std::span<std::byte> span() { return {buf_.data() + kGuard, size_}; }
  void clear() { std::memset(buf_.data() + kGuard, 0, size_); }
  void check(const char* name) {
    ASAN_UNPOISON_MEMORY_REGION(buf_.data(), buf_.size());
    for (size_t i = 0; i < kGuard; ++i) {
      if (buf_[i] != kGuardByte || buf_[kGuard + size_ + i] != kGuardByte) {
        violation(name, i);
      }
    }
    poison();
  }

 private:
  void poison() {
    ASAN_POISON_MEMORY_REGION(buf_.data(), kGuard);
    ASAN_POISON_MEMORY_REGION(buf_.data() + kGuard + size_, kGuard);
  }

  size_t size_;
  std::vector<std::byte> buf_;
};

// A zeroed GuardedBuffer of `size` bytes, made from the one kept in `slot` when it has that size.
GuardedBuffer& zeroed_buffer(std::unique_ptr<GuardedBuffer>& slot, size_t size) {
  if (!slot || slot->size() != size) {
    slot = std::make_unique<GuardedBuffer>(size);
  } else {
    slot->clear();
  }
  return *slot;
}

// The buffers kept between inputs: guest RAM, and BAR2 and VRAM of each GPU.
struct Buffers {
  std::unique_ptr<GuardedBuffer> ram;
  std::array<std::unique_ptr<GuardedBuffer>, kGpus> shm;
  std::array<std::unique_ptr<GuardedBuffer>, kGpus> vram;
  std::array<std::vector<std::byte>, kGpus> shadow;
};
Buffers& buffers() {
  static Buffers buffers;
  return buffers;
}

// True for the 4-byte words of BAR2 that the device itself may store to (SPEC 3, 4.3, 6): status
// and control, the RO queue fields (and HEAD, which a reset clears), the fault registers, and
// STATUS and ARG5 of the ring slots of its queues.
bool device_writable(uint32_t off, uint32_t num_queues) {
  using namespace regs;
  if (off < kRegPageSize) {
    for (const uint32_t reg :
         {reg::kStatus, reg::kError, reg::kControlAck, reg::kControl, reg::kControlSeq}) {
      if (off == reg) {
        return true;
      }
    }
    if (off >= freg::kBufAddr && off <= freg::kStalled) {
      return true;
    }
    if (off >= qreg::kBase && off < queue_reg(num_queues, 0)) {
      const uint32_t field = (off - qreg::kBase) % qreg::kStride;
      return field == qreg::kHead || field == qreg::kTail || field == qreg::kFence ||
             field == qreg::kFence + 4 || field == qreg::kErrors;
    }
    return false;
  }
  if (off >= ring_offset(num_queues)) {
    return false;
  }
  const uint32_t in_slot = (off - kRingsBase) % kDescSize;
  const uint32_t arg5 = desc::kArg0 + 8 * copy::kArgCompleted;
  return in_slot == desc::kStatus || in_slot == arg5 || in_slot == arg5 + 4;
}

class Harness {
 public:
  Harness(Reader& in, bool trace)
      : in_(in),
        trace_(trace),
        channels_(in.u8() % 4),
        compute_(in.u8() % 4),
        contexts_(1 + in.u8() % 8),
        mem_(kMemories.at(in.u8() % kMemories.size())),
        ram_mem_(zeroed_buffer(buffers().ram, mem_.ram)),
        ram_(ram_mem_.span()),
        next_table_(mem_.ram / kPage) {
    for (uint32_t g = 0; g < kGpus; ++g) {
      shm_.at(g) = &zeroed_buffer(buffers().shm.at(g), regs::kShmSize);
      vram_.at(g) = &zeroed_buffer(buffers().vram.at(g), mem_.vram);
    }
    for (uint32_t g = 0; g < kGpus; ++g) {
      GpuConfig config{.index = g,
                       .vram_size = mem_.vram,
                       .channels = channels_,
                       .compute = compute_,
                       .contexts = contexts_,
                       .vectors = 2 + channels_ + compute_,
                       .peer_group = 1,
                       .socket_path = {},
                       .copy_floor = false};
      gpus_.at(g) = std::make_unique<Gpu>(
          std::move(config), ram_,
          Gpu::Detached{.shm = shm_.at(g)->span(), .vram = vram_.at(g)->span()},
          [this](uint32_t index) { return index < kGpus ? gpus_.at(index).get() : nullptr; });
      page_.at(g) = SharedPage(shm_.at(g)->span().data(), regs::kShmSize);
      const std::span<std::byte> shm = shm_.at(g)->span();
      shadow_.at(g).assign(shm.begin(), shm.end());
    }
    if (trace_) {
      std::fprintf(stderr, "shape: %u channels, %u compute, %u contexts, RAM %llu, VRAM %llu\n",
                   channels_, compute_, contexts_, static_cast<unsigned long long>(mem_.ram),
                   static_cast<unsigned long long>(mem_.vram));
    }
  }

  void run() {
    while (!in_.empty()) {
      action();
    }
  }

  Outcome finish() {
    outcome_.fault_put = page_.at(0).load32(regs::freg::kPut, std::memory_order_relaxed);
    outcome_.fault_dropped = page_.at(0).load32(regs::freg::kDropped, std::memory_order_relaxed);
    outcome_.steps = steps_;
    for (uint32_t g = 0; g < kGpus; ++g) {
      check_bar2(g);
    }
    for (std::unique_ptr<Gpu>& gpu : gpus_) {
      gpu.reset();
    }
    ram_mem_.check("guest RAM guard zone changed");
    for (uint32_t g = 0; g < kGpus; ++g) {
      shm_.at(g)->check("BAR2 guard zone changed");
      vram_.at(g)->check("VRAM guard zone changed");
    }
    return std::move(outcome_);
  }

 private:
  [[nodiscard]] uint32_t num_queues() const { return 1 + channels_ + compute_; }

  // ---- decoding ----

  uint32_t gpu_index() { return in_.u8() % kGpus; }

  uint64_t value() {
    const uint8_t gen = in_.u8();
    const uint64_t raw = in_.bytes(1U << ((gen >> kWidthShift) & 3U));
    const uint64_t ram_pages = mem_.ram / kPage;
    const uint64_t vram_pages = mem_.vram / kPage;
    switch (
        static_cast<ValueKind>((gen & 0xfU) % static_cast<uint8_t>(ValueKind::kNumValueKinds))) {
      case ValueKind::kRaw:
        return raw;
      case ValueKind::kRam:
        return raw % mem_.ram;
      case ValueKind::kRamPage:
        return raw % ram_pages * kPage;
      case ValueKind::kRamEnd:
        return mem_.ram - raw % 64;
      case ValueKind::kVram:
        return raw % mem_.vram;
      case ValueKind::kVramPage:
        return raw % vram_pages * kPage;
      case ValueKind::kVramEnd:
        return mem_.vram - raw % 64;
      case ValueKind::kSmall:
        return raw % 64;
      case ValueKind::kPow2:
        return uint64_t{1} << (raw % 64);
      case ValueKind::kVaPage:
        return raw % 1024 * kPage;
      case ValueKind::kVaTop:
        return regs::mmu::kVaLimit - raw % 1024 * kPage;
      case ValueKind::kTop:
      default:
        return ~uint64_t{0} - raw % (1U << 16);
    }
  }

  uint32_t offset() {
    const uint8_t kind = in_.u8();
    const uint16_t raw = in_.u16();
    switch (static_cast<OffsetKind>(kind % static_cast<uint8_t>(OffsetKind::kNumOffsetKinds))) {
      case OffsetKind::kQueueReg:
        return regs::queue_reg((raw >> 4U) % regs::kMaxQueues, (raw % 16U) * 4);
      case OffsetKind::kControl:
        return (raw & 1U) != 0 ? regs::reg::kControlSeq : regs::reg::kControl;
      case OffsetKind::kFaultReg:
        return regs::freg::kBufAddr + (raw % 8U) * 4;
      case OffsetKind::kRegPage:
        return (raw % 1024U) * 4;
      case OffsetKind::kRing:
      default:
        return regs::kRingsBase + (uint32_t{raw} * 8) % (regs::kMaxQueues * regs::kRingBytes);
    }
  }

  uint64_t apertures() {
    const uint8_t form = in_.u8();
    if (form % 4 == 0) {
      return value();
    }
    const uint32_t src = in_.u8() % 4;
    const uint32_t dst = in_.u8() % 4;
    const uint32_t src_peer = in_.u8();
    const uint32_t dst_peer = in_.u8();
    return regs::copy::aperture_word(src, dst, src_peer, dst_peer);
  }

  uint64_t pte(uint64_t address_offset = 0) {
    const uint8_t kind = in_.u8();
    const uint64_t addr = value() + address_offset;
    const uint8_t bits = in_.u8();
    const bool write = (bits & 1U) != 0;
    switch (static_cast<PteKind>(kind % static_cast<uint8_t>(PteKind::kNumPteKinds))) {
      case PteKind::kDirectory:
        return regs::mmu::directory(addr);
      case PteKind::kSysmem:
        return regs::mmu::leaf(addr, regs::copy::kApSysmem, write);
      case PteKind::kVram:
        return regs::mmu::leaf(addr, regs::copy::kApVram, write);
      case PteKind::kPeer:
        return regs::mmu::leaf(addr, regs::copy::kApPeer, write, bits >> 1U);
      case PteKind::kRaw:
      default:
        return addr;
    }
  }

  // ---- the guest's side of BAR2 and of guest RAM ----

  void store32(uint32_t g, uint32_t off, uint32_t value) {
    page_.at(g).store32(off, value, std::memory_order_release);
    std::memcpy(shadow_.at(g).data() + off, &value, sizeof(value));
  }
  void store64(uint32_t g, uint32_t off, uint64_t value) {
    page_.at(g).store64(off, value, std::memory_order_release);
    std::memcpy(shadow_.at(g).data() + off, &value, sizeof(value));
  }
  [[nodiscard]] uint32_t load32(uint32_t g, uint32_t off) const {
    return page_.at(g).load32(off, std::memory_order_acquire);
  }
  // Guest RAM as the guest CPU sees it; nullptr outside it.
  [[nodiscard]] uint64_t* ram64(uint64_t gpa) const {
    if (gpa % 8 != 0) {
      return nullptr;
    }
    return reinterpret_cast<uint64_t*>(ram_.translate(gpa, 8));
  }
  void ram_store(uint64_t gpa, uint64_t value) const {
    if (uint64_t* p = ram64(gpa)) {
      std::atomic_ref<uint64_t>(*p).store(value, std::memory_order_release);
    }
  }

  // ---- actions ----

  void action() {
    const uint8_t byte = in_.u8();
    switch (static_cast<Action>(byte % static_cast<uint8_t>(Action::kNumActions))) {
      case Action::kReg32: {
        const uint32_t g = gpu_index();
        const uint32_t off = offset();
        const uint32_t v = in_.u32();
        trace("gpu%u: reg32 0x%x = 0x%x", g, off, v);
        store32(g, off, v);
        break;
      }
      case Action::kReg64: {
        const uint32_t g = gpu_index();
        const uint32_t off = offset() & ~7U;
        const uint64_t v = value();
        trace("gpu%u: reg64 0x%x = 0x%llx", g, off, static_cast<unsigned long long>(v));
        store64(g, off, v);
        break;
      }
      case Action::kDescriptor:
        descriptor();
        break;
      case Action::kDoorbell: {
        const uint32_t g = gpu_index();
        const uint32_t vector = in_.u8() % (4 + channels_ + compute_);
        const uint32_t budget = 1 + in_.u8();
        trace("gpu%u: doorbell %u (budget %u)", g, vector, budget);
        run_engine(g, vector, budget);
        break;
      }
      case Action::kRunAll:
        trace("run all");
        run_all();
        break;
      case Action::kPte: {
        const uint64_t table = value();
        const uint32_t index = in_.u16() % 512;
        const uint64_t entry = pte();
        trace("pte 0x%llx[%u] = 0x%llx", static_cast<unsigned long long>(table), index,
              static_cast<unsigned long long>(entry));
        ram_store(table + 8ULL * index, entry);
        break;
      }
      case Action::kMap:
        map();
        break;
      case Action::kRam64: {
        const uint64_t gpa = value();
        const uint64_t v = value();
        trace("ram 0x%llx = 0x%llx", static_cast<unsigned long long>(gpa),
              static_cast<unsigned long long>(v));
        ram_store(gpa, v);
        break;
      }
      case Action::kFaultConfig:
        fault_config();
        break;
      case Action::kFaultConsume: {
        const uint32_t g = gpu_index();
        trace("gpu%u: fault GET = PUT", g);
        store32(g, regs::freg::kGet, load32(g, regs::freg::kPut));
        break;
      }
      case Action::kControl:
        control();
        break;
      case Action::kDisconnect: {
        const uint32_t g = gpu_index();
        trace("gpu%u: disconnect", g);
        gpus_.at(g)->disconnect();
        observe(g);
        break;
      }
      case Action::kHost:
      default:
        host();
        break;
    }
  }

  void descriptor() {
    const uint32_t g = gpu_index();
    const uint32_t queue = in_.u8() % regs::kMaxQueues;
    const uint8_t kind = in_.u8() % static_cast<uint8_t>(DescKind::kNumDescKinds);
    const uint16_t flags = in_.u16();
    const uint64_t seqno = in_.u8();
    uint16_t opcode = 0;
    std::array<uint64_t, regs::kDescArgs> args{};
    switch (static_cast<DescKind>(kind)) {
      case DescKind::kNop:
        opcode = regs::kOpNop;
        break;
      case DescKind::kWrite64:
        opcode = regs::kOpWrite64;
        args = {value(), value()};
        break;
      case DescKind::kCopy:
      case DescKind::kCopyList:
        opcode = kind == static_cast<uint8_t>(DescKind::kCopy) ? regs::kOpCopy : regs::kOpCopyList;
        args[0] = value();
        args[1] = value();
        args[2] = value();
        args[3] = apertures();
        break;
      case DescKind::kCtxBind:
        opcode = regs::kOpCtxBind;
        args = {value(), value()};
        break;
      case DescKind::kTlbInvalidate:
        opcode = regs::kOpTlbInvalidate;
        args = {value(), value(), value()};
        break;
      case DescKind::kFaultReplay:
        opcode = regs::kOpFaultReplay;
        break;
      case DescKind::kFaultCancel:
        opcode = regs::kOpFaultCancel;
        args = {value(), value(), value(), value()};
        break;
      case DescKind::kLaunch: {
        opcode = regs::kOpLaunch;
        const uint64_t context = value();
        const uint32_t kernel = in_.u8() % 10;
        args[0] = (context & regs::launch::kContextMask) |
                  (uint64_t{kernel} << regs::launch::kKernelShift);
        args[1] = value();
        args[2] = value();
        args[3] = value();
        args[4] = value();
        break;
      }
      case DescKind::kRaw:
      default:
        opcode = in_.u16();
        for (uint64_t& arg : args) {
          arg = value();
        }
        break;
    }
    const uint8_t publish = in_.u8();
    const uint32_t head = load32(g, regs::queue_reg(queue, regs::qreg::kHead));
    const uint32_t slot = regs::ring_offset(queue) + (head % regs::kRingEntries) * regs::kDescSize;
    trace(
        "gpu%u: queue %u slot %u: opcode 0x%x flags 0x%x args 0x%llx 0x%llx 0x%llx 0x%llx "
        "0x%llx 0x%llx publish 0x%x",
        g, queue, head % regs::kRingEntries, opcode, flags,
        static_cast<unsigned long long>(args[0]), static_cast<unsigned long long>(args[1]),
        static_cast<unsigned long long>(args[2]), static_cast<unsigned long long>(args[3]),
        static_cast<unsigned long long>(args[4]), static_cast<unsigned long long>(args[5]),
        publish);
    store64(g, slot, uint64_t{opcode} | (uint64_t{flags} << 16U));  // STATUS 0
    store64(g, slot + regs::desc::kSeqno, seqno);
    for (uint32_t i = 0; i < regs::kDescArgs; ++i) {
      store64(g, slot + regs::desc::kArg0 + 8 * i, args.at(i));
    }
    if ((publish & kPublishHead) != 0) {
      store32(g, regs::queue_reg(queue, regs::qreg::kHead), head + 1);
      if ((publish & kPublishRing) != 0) {
        run_engine(g, queue, 1 + (publish >> 2U));
      }
    }
  }

  // Builds the 4-level mappings of `pages` VA pages from `va` under `root`, taking missing tables
  // from the top of guest RAM downwards (round and round: a fuzzer does not care what it
  // overwrites).
  void map() {
    const uint64_t root = value();
    const uint64_t va = value() & ~(kPage - 1);
    const uint32_t pages = 1 + in_.u8() % 64;
    const uint8_t kind = in_.u8();
    const uint64_t addr = value();
    const uint8_t bits = in_.u8();
    trace("map root 0x%llx va 0x%llx pages %u kind %u addr 0x%llx bits 0x%x",
          static_cast<unsigned long long>(root), static_cast<unsigned long long>(va), pages, kind,
          static_cast<unsigned long long>(addr), bits);
    for (uint64_t p = 0; p < pages && va + p * kPage < regs::mmu::kVaLimit; ++p) {
      const uint64_t page_va = va + p * kPage;
      uint64_t table = root;
      bool ok = true;
      for (uint32_t level = regs::mmu::kLevels - 1; level > 0 && ok; --level) {
        const uint64_t slot =
            table + regs::mmu::kEntrySize * regs::mmu::table_index(page_va, level);
        uint64_t* entry = ram64(slot);
        if (entry == nullptr) {
          ok = false;
          break;
        }
        uint64_t e = std::atomic_ref<uint64_t>(*entry).load(std::memory_order_acquire);
        if ((e & regs::mmu::kValid) == 0) {
          e = regs::mmu::directory(new_table());
          ram_store(slot, e);
        }
        table = e & regs::mmu::kAddrMask;
      }
      if (ok) {
        const uint64_t leaf_addr = addr + p * kPage;
        uint64_t leaf = 0;
        switch (kind % static_cast<uint8_t>(PteKind::kNumPteKinds)) {
          case static_cast<uint8_t>(PteKind::kVram):
            leaf = regs::mmu::leaf(leaf_addr, regs::copy::kApVram, (bits & 1U) != 0);
            break;
          case static_cast<uint8_t>(PteKind::kPeer):
            leaf = regs::mmu::leaf(leaf_addr, regs::copy::kApPeer, (bits & 1U) != 0, bits >> 1U);
            break;
          case static_cast<uint8_t>(PteKind::kRaw):
            leaf = addr;
            break;
          default:
            leaf = regs::mmu::leaf(leaf_addr, regs::copy::kApSysmem, (bits & 1U) != 0);
            break;
        }
        ram_store(table + regs::mmu::kEntrySize * regs::mmu::table_index(page_va, 0), leaf);
      }
    }
  }

  uint64_t new_table() {
    const uint64_t pages = mem_.ram / kPage;
    next_table_ = next_table_ <= pages / 2 ? pages - 1 : next_table_ - 1;
    const uint64_t gpa = next_table_ * kPage;
    std::memset(ram_.translate(gpa, kPage), 0, kPage);
    return gpa;
  }

  void fault_config() {
    const uint32_t g = gpu_index();
    const uint64_t addr = value();
    const uint64_t raw_entries = value();
    const uint8_t how = in_.u8();
    const auto entries =
        static_cast<uint32_t>((how & 4U) != 0 ? raw_entries : uint64_t{1} << (raw_entries % 17));
    trace("gpu%u: fault buffer 0x%llx entries %u how 0x%x", g,
          static_cast<unsigned long long>(addr), entries, how);
    if ((how & 1U) != 0) {
      store32(g, regs::freg::kGet, load32(g, regs::freg::kPut));
    }
    if ((how & 2U) != 0) {
      store32(g, regs::freg::kBufEntries, 0);
    }
    store64(g, regs::freg::kBufAddr, addr);
    store32(g, regs::freg::kBufEntries, entries);
  }

  void control() {
    const uint32_t g = gpu_index();
    const uint32_t bits = in_.u32();
    const uint8_t how = in_.u8();
    const uint32_t seq = load32(g, regs::reg::kControlAck) + ((how & 1U) != 0 ? 1U : how >> 2U);
    trace("gpu%u: control 0x%x seq %u how 0x%x", g, bits, seq, how);
    store32(g, regs::reg::kControl, bits);
    store32(g, regs::reg::kControlSeq, seq);
    if ((how & 2U) == 0) {
      run_engine(g, 0, 1);
    }
  }

  void host() {
    const uint32_t g = gpu_index();
    const uint8_t command = in_.u8() % kNumHostCommands;
    const uint64_t a = value();
    const uint64_t b = value();
    trace("gpu%u: host command %u 0x%llx 0x%llx", g, command, static_cast<unsigned long long>(a),
          static_cast<unsigned long long>(b));
    Gpu& gpu = *gpus_.at(g);
    switch (command) {
      case 0:
        gpu.set_hung(true);
        break;
      case 1:
        gpu.set_hung(false);
        break;
      case 2:
        gpu.inject_fail_copies(a);
        break;
      case 3:
        gpu.inject_fail_vram(a, b);
        break;
      case 4:
        gpu.clear_faults();
        break;
      default:
        gpu.set_copy_floor(command == 5);
        break;
    }
  }

  // ---- engines ----

  // Runs the engine of `queue` of GPU `g` for at most `budget` steps of what is left to the input.
  // One step at a time, so that the copies each step moved are charged before the next.
  size_t run_engine(uint32_t g, uint32_t queue, uint64_t budget) {
    size_t done = 0;
    while (done < budget && steps_ < kMaxSteps && gpus_.at(g)->run_engine(queue, 1) == 1) {
      ++done;
      ++steps_;
      observe(g);
    }
    if (done == 0) {
      observe(g);  // a control request may have reset the queues
    }
    return done;
  }

  void run_all() {
    bool progress = true;
    while (progress && steps_ < kMaxSteps) {
      progress = false;
      for (uint32_t g = 0; g < kGpus; ++g) {
        for (uint32_t q = 0; q < num_queues(); ++q) {
          progress = run_engine(g, q, 16) != 0 || progress;
        }
      }
    }
  }

  // Records the descriptors completed since the last look, on every queue: a cancel on queue 0
  // completes launches of others. It asks the device, not BAR2: the input may have overwritten
  // TAIL there, and a stale TAIL would replay old completions into the checks.
  void observe(uint32_t g) {
    for (uint32_t q = 0; q < num_queues(); ++q) {
      const uint32_t tail = gpus_.at(g)->completed(q);
      uint32_t& seen = seen_tail_.at(g).at(q);
      if (tail - seen <= regs::kRingEntries) {
        for (; seen != tail; ++seen) {
          const uint32_t slot =
              regs::ring_offset(q) + (seen % regs::kRingEntries) * regs::kDescSize;
          const Completion done{
              .gpu = g,
              .queue = q,
              .opcode = static_cast<uint16_t>(load32(g, slot) & 0xffffU),
              .status = load32(g, slot + regs::desc::kStatus),
              .arg5 = page_.at(g).load64(slot + regs::desc::kArg0 + 8 * regs::copy::kArgCompleted,
                                         std::memory_order_acquire)};
          trace("gpu%u: queue %u completed opcode 0x%x status %u arg5 0x%llx", g, q, done.opcode,
                done.status, static_cast<unsigned long long>(done.arg5));
          outcome_.completions.push_back(done);
          charge_copy(g, slot, done);
          check_tlb_dropped(g, slot, done);
        }
      }
      seen = tail;
    }
  }

  // Charges what a completed copy moved to the input's steps.
  void charge_copy(uint32_t g, uint32_t slot, const Completion& done) {
    const auto arg = [&](uint32_t i) {
      return page_.at(g).load64(slot + regs::desc::kArg0 + 8 * i, std::memory_order_relaxed);
    };
    uint64_t bytes = 0;
    if (done.opcode == regs::kOpCopy && done.status == static_cast<uint32_t>(DescStatus::kOk)) {
      bytes = arg(2);
    } else if (done.opcode == regs::kOpCopyList && done.arg5 <= regs::copy::kMaxEntries &&
               arg(2) <= regs::copy::kMaxBlock) {
      bytes = done.arg5 * arg(2);  // the blocks it copied
    }
    steps_ += bytes >> kCopyStepShift;
  }

  // ---- checks ----

  // SPEC 4.5, 4.6: once an OP_CTX_BIND or OP_TLB_INVALIDATE has completed, the TLB holds no entry
  // of what it dropped. (Only compute waves fill the TLB, and none ran since: the engine that
  // completed it runs queue 0.)
  void check_tlb_dropped(uint32_t g, uint32_t slot, const Completion& done) const {
    if (done.status != static_cast<uint32_t>(DescStatus::kOk) || done.queue != 0 ||
        (done.opcode != regs::kOpCtxBind && done.opcode != regs::kOpTlbInvalidate)) {
      return;
    }
    const auto arg = [&](uint32_t i) {
      return page_.at(g).load64(slot + regs::desc::kArg0 + 8 * i, std::memory_order_relaxed);
    };
    const auto context = static_cast<uint32_t>(arg(0));
    constexpr uint64_t kVpnLimit = regs::mmu::kVaLimit >> regs::mmu::kPageShift;
    uint64_t first = 0;
    uint64_t end = kVpnLimit;
    if (done.opcode == regs::kOpTlbInvalidate && arg(2) != 0) {
      first = arg(1) >> regs::mmu::kPageShift;
      end = (arg(1) + arg(2)) >> regs::mmu::kPageShift;
    }
    if (gpus_.at(g)->tlb_entries(context, first, end) != 0) {
      violation("TLB entries left in the range an invalidation dropped", arg(1));
    }
  }

  // Every word of BAR2 that differs from what the guest last stored must be one the device may
  // store to.
  void check_bar2(uint32_t g) const {
    const std::span<std::byte> shm = shm_.at(g)->span();
    const std::vector<std::byte>& shadow = shadow_.at(g);
    constexpr uint32_t kChunk = 256;
    for (uint32_t chunk = 0; chunk < shm.size(); chunk += kChunk) {
      if (std::memcmp(shm.data() + chunk, shadow.data() + chunk, kChunk) == 0) {
        continue;
      }
      for (uint32_t off = chunk; off < chunk + kChunk; off += 4) {
        uint32_t now = 0;
        uint32_t was = 0;
        std::memcpy(&now, shm.data() + off, 4);
        std::memcpy(&was, shadow.data() + off, 4);
        if (now != was && !device_writable(off, num_queues())) {
          violation("the device stored into BAR2 outside its registers and ring fields", off);
        }
      }
    }
  }

  void trace(const char* fmt, ...) const __attribute__((format(printf, 2, 3))) {
    if (!trace_) {
      return;
    }
    va_list args;
    va_start(args, fmt);
    std::vfprintf(stderr, fmt, args);
    va_end(args);
    std::fputc('\n', stderr);
  }

  Reader& in_;
  bool trace_;
  uint32_t channels_;
  uint32_t compute_;
  uint32_t contexts_;
  Memories mem_;
  GuardedBuffer& ram_mem_;
  GuestRam ram_;
  uint64_t next_table_;  // page number of the last table map() took
  uint64_t steps_ = 0;
  Outcome outcome_;
  std::array<GuardedBuffer*, kGpus> shm_{};
  std::array<GuardedBuffer*, kGpus> vram_{};
  std::array<SharedPage, kGpus> page_;
  std::array<std::vector<std::byte>, kGpus>& shadow_ = buffers().shadow;  // BAR2 as the guest
                                                                          // last wrote it
  std::array<std::array<uint32_t, regs::kMaxQueues>, kGpus> seen_tail_{};
  std::array<std::unique_ptr<Gpu>, kGpus> gpus_;  // last: destroyed before the memories
};

}  // namespace

Outcome run_device_input(std::span<const uint8_t> data, bool trace) {
  Reader in(data);
  Harness harness(in, trace);
  harness.run();
  return harness.finish();
}

}  // namespace hmmgpu::fuzz
