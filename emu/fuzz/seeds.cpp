// SPDX-License-Identifier: GPL-2.0
// The device fuzzer's seed corpus (corpus/device/seed-*): valid guest command sequences that take
// the devices deep (copies, a map and launches, a fault and its replay, resets), written in the
// input format of input.h.
//
//   emu-fuzz-seeds --write DIR   writes them into DIR
//   emu-fuzz-seeds --check DIR   runs DIR's seeds and checks each still does what it is for (a
//                                change of the input format or of the device that silently makes
//                                a seed shallow fails here); runs every other file of DIR too
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "device_harness.h"
#include "input.h"
#include "log.h"
#include "regs.h"

namespace hmmgpu::fuzz {
namespace {

using regs::DescStatus;

// The shape every seed uses: 2 channels (queues 1, 2), 2 compute queues (3, 4), 4 contexts,
// 128 KiB of guest RAM and 64 KiB of VRAM per GPU (memory variant 0).
constexpr uint32_t kChannel = 1;
constexpr uint32_t kChannel2 = 2;
constexpr uint32_t kCq = 3;
constexpr uint32_t kCq2 = 4;
constexpr uint8_t kPublish = 0xff;  // advance HEAD, ring, 64 steps at most

// Writes one seed, action by action, as the harness decodes it.
class Seed {
 public:
  Seed() {
    w_.u8(2);  // channels
    w_.u8(2);  // compute queues
    w_.u8(3);  // 1 + 3 contexts
    w_.u8(0);  // memory variant
  }

  void nop(uint32_t gpu, uint32_t queue, uint16_t flags = 0) {
    header(gpu, queue, DescKind::kNop, flags);
    w_.u8(kPublish);
  }
  void write64(uint32_t gpu, uint32_t queue, uint64_t addr, uint64_t value) {
    header(gpu, queue, DescKind::kWrite64);
    values({addr, value});
    w_.u8(kPublish);
  }
  void copy(uint32_t gpu, uint32_t queue, uint64_t src, uint64_t dst, uint64_t len,
            uint64_t apertures) {
    header(gpu, queue, DescKind::kCopy);
    values({src, dst, len});
    w_.u8(0);  // the aperture word as a Value
    w_.value(apertures);
    w_.u8(kPublish);
  }
  void copy_list(uint32_t gpu, uint32_t queue, uint64_t list, uint64_t count, uint64_t block,
                 uint64_t apertures) {
    header(gpu, queue, DescKind::kCopyList);
    values({list, count, block});
    w_.u8(0);
    w_.value(apertures);
    w_.u8(kPublish);
  }
  void ctx_bind(uint32_t gpu, uint64_t context, uint64_t root) {
    header(gpu, 0, DescKind::kCtxBind);
    values({context, root});
    w_.u8(kPublish);
  }
  void tlb_invalidate(uint32_t gpu, uint64_t context, uint64_t va, uint64_t len) {
    header(gpu, 0, DescKind::kTlbInvalidate);
    values({context, va, len});
    w_.u8(kPublish);
  }
  void replay(uint32_t gpu) {
    header(gpu, 0, DescKind::kFaultReplay);
    w_.u8(kPublish);
  }
  void cancel(uint32_t gpu, uint64_t context, uint64_t va, uint64_t mode) {
    header(gpu, 0, DescKind::kFaultCancel);
    values({context, va, mode, 0});
    w_.u8(kPublish);
  }
  void launch(uint32_t gpu, uint32_t queue, uint64_t context, uint32_t kernel, uint64_t count,
              uint64_t va0, uint64_t va1 = 0, uint64_t scalar = 0, uint8_t publish = kPublish) {
    header(gpu, queue, DescKind::kLaunch);
    w_.value(context);
    w_.u8(kernel);
    values({count, va0, va1, scalar});
    w_.u8(publish);
  }
  void raw(uint32_t gpu, uint32_t queue, uint16_t opcode) {
    header(gpu, queue, DescKind::kRaw);
    w_.u16(opcode);
    values({0, 0, 0, 0, 0, 0});
    w_.u8(kPublish);
  }

  void reg32(uint32_t gpu, OffsetKind kind, uint16_t raw, uint32_t value) {
    w_.action(Action::kReg32);
    w_.u8(gpu);
    w_.u8(static_cast<uint8_t>(kind));
    w_.u16(raw);
    w_.u32(value);
  }
  void doorbell(uint32_t gpu, uint32_t vector, uint8_t budget = 63) {
    w_.action(Action::kDoorbell);
    w_.u8(gpu);
    w_.u8(vector);
    w_.u8(budget);
  }
  void run_all() { w_.action(Action::kRunAll); }
  void pte(uint64_t table, uint16_t index, PteKind kind, uint64_t addr, uint8_t bits) {
    w_.action(Action::kPte);
    w_.value(table);
    w_.u16(index);
    w_.u8(static_cast<uint8_t>(kind));
    w_.value(addr);
    w_.u8(bits);
  }
  void map(uint64_t root, uint64_t va, uint32_t pages, PteKind kind, uint64_t addr,
           uint8_t bits = 1) {
    w_.action(Action::kMap);
    w_.value(root);
    w_.value(va);
    w_.u8(pages - 1);
    w_.u8(static_cast<uint8_t>(kind));
    w_.value(addr);
    w_.u8(bits);
  }
  void ram64(uint64_t gpa, uint64_t value) {
    w_.action(Action::kRam64);
    w_.value(gpa);
    w_.value(value);
  }
  void fault_buffer(uint32_t gpu, uint64_t addr, uint32_t entries) {
    w_.action(Action::kFaultConfig);
    w_.u8(gpu);
    w_.value(addr);
    w_.value(entries);
    w_.u8(7);  // GET = PUT, ENTRIES = 0, then the address and `entries` as is
  }
  void fault_consume(uint32_t gpu) {
    w_.action(Action::kFaultConsume);
    w_.u8(gpu);
  }
  void control(uint32_t gpu, uint32_t bits) {
    w_.action(Action::kControl);
    w_.u8(gpu);
    w_.u32(bits);
    w_.u8(1);  // CONTROL_ACK + 1, and the doorbell
  }
  void disconnect(uint32_t gpu) {
    w_.action(Action::kDisconnect);
    w_.u8(gpu);
  }
  void host(uint32_t gpu, uint8_t command, uint64_t a = 0, uint64_t b = 0) {
    w_.action(Action::kHost);
    w_.u8(gpu);
    w_.u8(command);
    w_.value(a);
    w_.value(b);
  }

  [[nodiscard]] const std::vector<uint8_t>& data() const { return w_.data(); }

 private:
  void header(uint32_t gpu, uint32_t queue, DescKind kind, uint16_t flags = regs::kFlagIrq) {
    w_.action(Action::kDescriptor);
    w_.u8(gpu);
    w_.u8(queue);
    w_.u8(static_cast<uint8_t>(kind));
    w_.u16(flags);
    w_.u8(++seqno_);
  }
  void values(std::initializer_list<uint64_t> values) {
    for (const uint64_t v : values) {
      w_.value(v);
    }
  }

  Writer w_;
  uint8_t seqno_ = 0;
};

using regs::copy::aperture_word;
using regs::copy::kApPeer;
using regs::copy::kApSysmem;
using regs::copy::kApVram;

// Guest RAM of the seeds.
constexpr uint64_t kSrc = 0x1000;
constexpr uint64_t kDst = 0x2000;
constexpr uint64_t kList = 0x3000;
constexpr uint64_t kRoot = 0x4000;
constexpr uint64_t kRoot2 = 0x5000;
constexpr uint64_t kFaultBuf = 0x8000;
constexpr uint64_t kData = 0x10000;

// A seed and what its run must show.
struct SeedCase {
  const char* name;
  std::function<void(Seed&)> write;
  std::function<bool(const Outcome&)> check;
};

size_t count(const Outcome& out, uint16_t opcode, DescStatus status) {
  size_t n = 0;
  for (const Completion& c : out.completions) {
    n += c.opcode == opcode && c.status == static_cast<uint32_t>(status) ? 1 : 0;
  }
  return n;
}

bool all_ok(const Outcome& out, size_t expected) {
  size_t ok = 0;
  for (const Completion& c : out.completions) {
    ok += c.status == static_cast<uint32_t>(DescStatus::kOk) ? 1 : 0;
  }
  return ok == expected && out.completions.size() == expected;
}

std::vector<SeedCase> seed_cases() {
  namespace k = regs::launch;
  return {
      {"copy",
       [](Seed& s) {
         s.ram64(kSrc, 0x1122334455667788);
         s.copy(0, kChannel, kSrc, 0, 0x1000, aperture_word(kApSysmem, kApVram));
         s.copy(0, kChannel, 0, kDst, 0x1000, aperture_word(kApVram, kApSysmem));
         s.ram64(kList, 0);
         s.ram64(kList + 8, 0x1000);
         s.copy_list(0, kChannel2, kList, 1, 0x1000, aperture_word(kApVram, kApVram));
         s.copy(0, kChannel, 0, 0, 0x1000, aperture_word(kApVram, kApPeer, 0, 1));
         s.write64(0, 0, kDst + 0xff8, 42);
         s.nop(0, 0, regs::kFlagIrq);
       },
       [](const Outcome& out) {
         return all_ok(out, 6) && count(out, regs::kOpCopy, DescStatus::kOk) == 3;
       }},
      {"launch",
       [](Seed& s) {
         s.ctx_bind(0, 1, kRoot);
         s.map(kRoot, 0x10000, 4, PteKind::kSysmem, kData);
         s.launch(0, kCq, 1, k::kFillU32, 1024, 0x10000, 0, 7);
         s.launch(0, kCq2, 1, k::kChecksum, 4096, 0x10000);
         s.map(kRoot, 0x20000, 2, PteKind::kVram, 0);
         s.launch(0, kCq, 1, k::kCopy, 8192, 0x20000, 0x10000);
         s.launch(0, kCq2, 1, k::kAxpyF32, 1024, 0x20000, 0x10000, 0x3f800000);
         s.tlb_invalidate(0, 1, 0x10000, 0x4000);
         s.launch(0, kCq, 1, k::kSumU64, 512, 0x20000);
       },
       [](const Outcome& out) {
         return all_ok(out, 7) && count(out, regs::kOpLaunch, DescStatus::kOk) == 5;
       }},
      {"fault-replay",
       [](Seed& s) {
         s.fault_buffer(0, kFaultBuf, 64);
         s.ctx_bind(0, 2, kRoot2);
         s.launch(0, kCq, 2, k::kIncrementU32, 1024, 0x40000, 0, 1);  // stalls: not present
         s.fault_consume(0);
         s.map(kRoot2, 0x40000, 1, PteKind::kSysmem, kData + 0x1000);
         s.replay(0);
         s.doorbell(0, kCq);
         s.map(kRoot2, 0x60000, 1, PteKind::kSysmem, kData + 0x2000, 0);  // read-only
         s.launch(0, kCq2, 2, k::kChecksum, 16, 0x60000);       // caches the read-only translation
         s.launch(0, kCq2, 2, k::kFillU32, 16, 0x60000, 0, 5);  // stalls: write-protected
         s.cancel(0, 2, 0x60000, regs::fault::kCancelPage);
         s.launch(0, kCq, 2, k::kSumF32, 16, 0x70000);  // stalls: not present
         s.fault_consume(0);
         s.cancel(0, 2, 0, regs::fault::kCancelContext);
         s.run_all();
       },
       [](const Outcome& out) {
         return out.fault_put == 3 && out.fault_dropped == 0 &&
                count(out, regs::kOpLaunch, DescStatus::kOk) == 2 &&
                count(out, regs::kOpLaunch, DescStatus::kMmuFault) == 2 &&
                count(out, regs::kOpFaultReplay, DescStatus::kOk) == 1 &&
                count(out, regs::kOpFaultCancel, DescStatus::kOk) == 2;
       }},
      {"control",
       [](Seed& s) {
         s.nop(0, 0);
         s.control(0, regs::kControlReset);
         s.reg32(0, OffsetKind::kQueueReg, 1 << 4 | regs::qreg::kHead / 4, 1000);  // bad HEAD
         s.doorbell(0, kChannel);
         s.control(0, regs::kControlReset);
         s.nop(0, 0);
         s.control(0, 1U << 5);  // a reserved bit: halted
         s.nop(0, 0);            // not executed
         s.disconnect(0);
         s.host(0, 2, 1);  // fail-copies 1
         s.copy(0, kChannel, kSrc, kDst, 0x100, aperture_word(kApSysmem, kApSysmem));
         s.host(0, 0);  // hang
         s.nop(0, 0);
         s.host(0, 1);  // unhang
         s.doorbell(0, 0);
         s.host(0, 5);  // copy floor on
         s.copy(0, kChannel, kSrc, kDst, 0x100, aperture_word(kApSysmem, kApSysmem));
       },
       [](const Outcome& out) {
         return count(out, regs::kOpNop, DescStatus::kOk) == 3 &&
                count(out, regs::kOpCopy, DescStatus::kInjected) == 1 &&
                count(out, regs::kOpCopy, DescStatus::kOk) == 1;
       }},
      // Valid work that ends exactly at the end of each memory and of the VA space: one mutation
      // away from crossing it.
      {"edges",
       [](Seed& s) {
         constexpr uint64_t kRamEnd = 128 << 10;
         constexpr uint64_t kVramEnd = 64 << 10;
         s.copy(0, kChannel, kRamEnd - 16, kVramEnd - 16, 16, aperture_word(kApSysmem, kApVram));
         s.copy(0, kChannel, kVramEnd - 16, kRamEnd - 32, 16, aperture_word(kApVram, kApSysmem));
         s.copy(0, kChannel2, kVramEnd - 16, kVramEnd - 16, 16,
                aperture_word(kApVram, kApPeer, 0, 1));
         s.ram64(kList, kVramEnd - 0x1000);
         s.ram64(kList + 8, kRamEnd - 0x1000);
         s.copy_list(0, kChannel2, kList, 1, 0x1000, aperture_word(kApPeer, kApSysmem, 1, 0));
         s.write64(0, 0, kRamEnd - 8, 1);
         s.fault_buffer(0, kRamEnd - 0x1000, 128);
         s.ctx_bind(0, 1, kRoot);
         s.map(kRoot, regs::mmu::kVaLimit - 0x1000, 1, PteKind::kSysmem, kRamEnd - 0x1000);
         s.map(kRoot, regs::mmu::kVaLimit - 0x2000, 1, PteKind::kVram, kVramEnd - 0x1000);
         s.map(kRoot, regs::mmu::kVaLimit - 0x3000, 1, PteKind::kPeer, kVramEnd - 0x1000, 3);
         s.launch(0, kCq, 1, k::kChecksum, 0x3000, regs::mmu::kVaLimit - 0x3000);
         s.launch(0, kCq2, 1, k::kSumU64, 1, regs::mmu::kVaLimit - 8);
         s.launch(0, kCq, 1, k::kFillU32, 0x400, regs::mmu::kVaLimit - 0x4000, 0, 1);  // faults
       },
       [](const Outcome& out) {
         return count(out, regs::kOpCopy, DescStatus::kOk) == 3 &&
                count(out, regs::kOpCopyList, DescStatus::kOk) == 1 &&
                count(out, regs::kOpWrite64, DescStatus::kOk) == 1 &&
                count(out, regs::kOpLaunch, DescStatus::kOk) == 2 && out.fault_put == 1;
       }},
      {"errors",
       [](Seed& s) {
         s.copy(0, kChannel, 0x1f000, kDst, 0x2000, aperture_word(kApSysmem, kApSysmem));
         s.copy(0, kChannel, 0xf000, kDst, 0x2000, aperture_word(kApVram, kApSysmem));
         s.launch(0, kCq, 3, k::kFillU32, 16, 0x1000);  // unbound context
         s.raw(0, 0, 0x7777);
         s.ctx_bind(0, 99, kRoot);
         s.ctx_bind(0, 3, kRoot);
         s.pte(kRoot, 1, PteKind::kRaw, 0xff, 0);  // reserved bits in a directory entry
         s.launch(0, kCq, 3, k::kFillU32, 16, 1ULL << 39);
         s.map(kRoot, 0x80000, 1, PteKind::kSysmem, 0x7fff000);  // outside guest RAM
         s.launch(0, kCq, 3, k::kFillU32, 16, 0x80000);
       },
       [](const Outcome& out) {
         return count(out, regs::kOpCopy, DescStatus::kBadAddress) == 1 &&
                count(out, regs::kOpCopy, DescStatus::kBadVram) == 1 &&
                count(out, regs::kOpLaunch, DescStatus::kBadContext) == 1 &&
                count(out, 0x7777, DescStatus::kBadOpcode) == 1 &&
                count(out, regs::kOpCtxBind, DescStatus::kBadContext) == 1 &&
                count(out, regs::kOpLaunch, DescStatus::kBadPte) == 1 &&
                count(out, regs::kOpLaunch, DescStatus::kBadAddress) == 1;
       }},
  };
}

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int write_seeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  for (const SeedCase& seed : seed_cases()) {
    Seed s;
    seed.write(s);
    std::ofstream out(dir / (std::string("seed-") + seed.name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(s.data().data()),
              static_cast<std::streamsize>(s.data().size()));
  }
  return 0;
}

int check_seeds(const std::filesystem::path& dir) {
  int failures = 0;
  for (const SeedCase& seed : seed_cases()) {
    const std::filesystem::path path = dir / (std::string("seed-") + seed.name);
    Seed s;
    seed.write(s);
    const std::vector<uint8_t> data = read_file(path);
    if (data != s.data()) {
      std::fprintf(stderr, "%s: missing or out of date (emu-fuzz-seeds --write %s)\n", path.c_str(),
                   dir.c_str());
      ++failures;
      continue;
    }
    if (!seed.check(run_device_input(data, false))) {
      std::fprintf(stderr,
                   "%s: does not do what it is for; HMMGPU_FUZZ_TRACE=1 emu-fuzz-device %s\n",
                   path.c_str(), path.c_str());
      ++failures;
    }
  }
  size_t others = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file() && !entry.path().filename().string().starts_with("seed-")) {
      run_device_input(read_file(entry.path()), false);  // regression inputs: must not crash
      ++others;
    }
  }
  std::printf("%zu seeds checked, %zu other inputs run, %d failed\n", seed_cases().size(), others,
              failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace hmmgpu::fuzz

int main(int argc, char** argv) {
  hmmgpu::log::set_silent(true);
  if (argc == 3 && std::strcmp(argv[1], "--write") == 0) {
    return hmmgpu::fuzz::write_seeds(argv[2]);
  }
  if (argc == 3 && std::strcmp(argv[1], "--check") == 0) {
    return hmmgpu::fuzz::check_seeds(argv[2]);
  }
  std::fprintf(stderr, "usage: %s --write DIR | --check DIR\n", argv[0]);
  return 2;
}
