// SPDX-License-Identifier: GPL-2.0
// SPEC 1.2: contexts and page tables (4.5), the TLB and its invalidation (4.6), replayable faults
// and the fault buffer (3.5, 4.8), driven through the real ivshmem protocol with the test playing
// the driver in guest memory.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "mmu_fixture.h"

namespace hmmgpu::test::mmu {
namespace {

using regs::copy::aperture_word;
using regs::copy::kApPeer;
using regs::copy::kApSysmem;
using regs::copy::kApVram;
using regs::fault::kAccessRead;
using regs::fault::kAccessWrite;
using regs::fault::kTypeNotPresent;
using regs::fault::kTypeWriteProtected;
using namespace regs::launch;

constexpr uint64_t kVa = 0x10000000;      // 256 MiB: an arbitrary VA for the tests' buffers
constexpr uint64_t kPerPage = kPage / 4;  // u32 elements in a page

// The register map of version 1.2 carries the offsets and values SPEC.md defines.
TEST(RegisterLayout12, MatchesSpec) {
  static_assert(regs::kVersion >= 0x00010002);
  static_assert(regs::reg::kNumCompute == 0x034 && regs::reg::kNumContexts == 0x038 &&
                regs::reg::kFaultVector == 0x03c);
  static_assert(regs::kCapMmu == 1U << 3 && regs::kCapCompute == 1U << 4 &&
                regs::kCapFault == 1U << 5);
  static_assert(regs::freg::kBufAddr == 0x900 && regs::freg::kBufEntries == 0x908 &&
                regs::freg::kGet == 0x90c && regs::freg::kPut == 0x910 &&
                regs::freg::kDropped == 0x914 && regs::freg::kStatus == 0x918 &&
                regs::freg::kStalled == 0x91c);
  static_assert(regs::freg::kStatusOverflow == 1 && regs::freg::kStatusBadConfig == 2);
  static_assert(regs::kOpCtxBind == 0x10 && regs::kOpTlbInvalidate == 0x11 &&
                regs::kOpFaultReplay == 0x12 && regs::kOpFaultCancel == 0x13 &&
                regs::kOpLaunch == 0x20);
  static_assert(st(DescStatus::kBadContext) == 10 && st(DescStatus::kBadPte) == 11 &&
                st(DescStatus::kMmuFault) == 12);
  static_assert(regs::mmu::leaf(0x12345000, kApPeer, true, 3) ==
                (0x1ULL | 0x2 | (2ULL << 3) | 0x12345000 | (3ULL << 52)));
  static_assert(regs::mmu::kLeafValidMask == 0x0ffffffffffff01bULL);
  static_assert(regs::mmu::kDirValidMask == 0x000ffffffffff001ULL);
  static_assert(regs::mmu::table_index(0x0000'8000'0000'0000ULL - 1, 3) == 255);
  static_assert(regs::mmu::table_index(0x4020'1000ULL, 2) == 1 &&
                regs::mmu::table_index(0x4020'1000ULL, 1) == 1 &&
                regs::mmu::table_index(0x4020'1000ULL, 0) == 1);
  static_assert(regs::fault::kEntrySize == 32 && regs::fault::kVa == 0 &&
                regs::fault::kContext == 8 && regs::fault::kAccess == 0x0c &&
                regs::fault::kType == 0x0d && regs::fault::kEngine == 0x0e &&
                regs::fault::kTimestamp == 0x10);
  static_assert(kFillU32 == 1 && kCopy == 2 && kAxpyF32 == 3 && kScaleF32 == 4 &&
                kIncrementU32 == 5 && kSumF32 == 6 && kSumU64 == 7 && kChecksum == 8);
  static_assert(arg0(5, kChecksum) == 0x0000000800000005ULL);
  SUCCEED();
}

class MmuTest : public MmuFixture {};

// SPEC 3.1, 3.5: the 1.2 identification registers and the fault registers after a reset.
TEST_F(MmuTest, IdentificationAndFaultRegisters) {
  for (uint32_t g = 0; g < kGpus; ++g) {
    EXPECT_EQ(q(g).reg32(regs::reg::kVersion), regs::kVersion);
    EXPECT_EQ(q(g).reg32(regs::reg::kCaps), 0x3fU);
    EXPECT_EQ(q(g).reg32(regs::reg::kNumQueues), 1 + kChannels + kCompute);
    EXPECT_EQ(q(g).reg32(regs::reg::kNumCompute), kCompute);
    EXPECT_EQ(q(g).reg32(regs::reg::kNumContexts), kContexts);
    EXPECT_EQ(q(g).reg32(regs::reg::kFaultVector), kFaultVector);
    EXPECT_GE(q(g).reg32(regs::reg::kNumVectors), kFaultVector + 1);
    for (const uint32_t off : {regs::freg::kBufEntries, regs::freg::kGet, regs::freg::kPut,
                               regs::freg::kDropped, regs::freg::kStatus, regs::freg::kStalled}) {
      EXPECT_EQ(q(g).reg32(off), 0U) << std::hex << off;
    }
    EXPECT_EQ(q(g).reg64(regs::freg::kBufAddr), 0U);
    EXPECT_EQ(q(g).qreg32(kCq2, regs::qreg::kVector), kCq2);
  }
}

// Without compute queues CAP_COMPUTE is clear and OP_LAUNCH is an unknown opcode everywhere.
TEST(MmuNoCompute, CapsWithoutComputeQueues) {
  TestRig rig(TestRig::Options{.ram_size = 64 * kMiB,
                               .gpus = 1,
                               .vram_size = 2 * kMiB,
                               .channels = 1,
                               .vectors = 3,
                               .control_file = false,
                               .compute = 0,
                               .contexts = 1});
  std::unique_ptr<FakeQemu> q;
  ASSERT_NO_THROW(q = FakeQemu::connect(rig.emu().socket_path(0), 3));
  EXPECT_EQ(q->reg32(regs::reg::kCaps), 0x2fU);
  EXPECT_EQ(q->reg32(regs::reg::kNumQueues), 2U);
  EXPECT_EQ(q->reg32(regs::reg::kFaultVector), 2U);
  for (uint32_t queue = 0; queue < 2; ++queue) {
    const uint32_t head = q->submit(queue, {launch(1, 0, kFillU32, 1, 0x1000, 0, 0)});
    ASSERT_TRUE(q->wait_tail(queue, head));
    EXPECT_EQ(q->desc_status(queue, head - 1), st(DescStatus::kBadOpcode));
  }
}

// OP_CTX_BIND binds and unbinds; every bad input gives its status, in SPEC 5.1 order; the MMU
// opcodes run on queue 0 only.
TEST_F(MmuTest, BindUnbindAndBadInputs) {
  const uint64_t root = new_table();
  map_sys(root, kVa, kPage, kData);
  EXPECT_EQ(run(0, ctx_bind(1, 3, root)), st(DescStatus::kOk));
  EXPECT_EQ(run(kCq, launch(2, 3, kFillU32, 4, kVa, 0, 9)), st(DescStatus::kOk));
  EXPECT_EQ(word(kData), 9U);
  EXPECT_EQ(run(0, ctx_bind(3, 3, root)), st(DescStatus::kOk));  // bound again: fine
  EXPECT_EQ(run(0, ctx_bind(4, 3, 0)), st(DescStatus::kOk));     // unbind
  EXPECT_EQ(run(0, ctx_bind(5, 3, 0)), st(DescStatus::kOk));     // unbound again: fine
  EXPECT_EQ(run(kCq, launch(6, 3, kFillU32, 4, kVa, 0, 10)), st(DescStatus::kBadContext));
  EXPECT_EQ(last_arg5(kCq), 0U);
  EXPECT_EQ(word(kData), 9U);

  Desc arg2 = ctx_bind(0, 3, root);
  arg2.args[2] = 1;
  Desc arg5 = ctx_bind(0, 3, root);
  arg5.args[5] = 1;
  Desc flags = ctx_bind(0, 3, root);
  flags.flags = 0x4;
  const std::vector<std::pair<Desc, DescStatus>> cases = {
      {flags, DescStatus::kBadFlags},
      {arg2, DescStatus::kBadArg},
      {arg5, DescStatus::kBadArg},
      {ctx_bind(0, 3, root + 8), DescStatus::kBadAlign},
      {ctx_bind(0, kContexts, root + 8), DescStatus::kBadAlign},  // before BAD_CONTEXT
      {ctx_bind(0, 3, kRamSize), DescStatus::kBadAddress},
      {ctx_bind(0, 3, 1ULL << 52), DescStatus::kBadAddress},
      {ctx_bind(0, 3, ~0ULL & ~(kPage - 1)), DescStatus::kBadAddress},  // wraps
      {ctx_bind(0, kContexts, kRamSize), DescStatus::kBadAddress},
      {ctx_bind(0, kContexts, root), DescStatus::kBadContext},
      {ctx_bind(0, 1ULL << 32, root), DescStatus::kBadContext},
      {ctx_bind(0, kContexts, 0), DescStatus::kBadContext},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(run(0, cases[i].first), st(cases[i].second)) << "case " << i;
  }
  // Still unbound: none of them bound anything.
  EXPECT_EQ(run(kCq, launch(7, 3, kFillU32, 4, kVa, 0, 10)), st(DescStatus::kBadContext));
  // The last valid context works.
  EXPECT_EQ(run(0, ctx_bind(8, kContexts - 1, root)), st(DescStatus::kOk));
  EXPECT_EQ(run(kCq2, launch(9, kContexts - 1, kFillU32, 4, kVa, 0, 11)), st(DescStatus::kOk));
  EXPECT_EQ(word(kData), 11U);

  // Queue 0 only: a channel and a compute queue refuse every MMU opcode.
  for (const uint32_t queue : {kChannel, kCq}) {
    for (const Desc& desc : {ctx_bind(10, 3, root), tlb_invalidate(10, 3, 0, 0), fault_replay(10),
                             fault_cancel(10, 3, 0, 1)}) {
      EXPECT_EQ(run(queue, desc), st(DescStatus::kBadOpcode)) << "queue " << queue;
    }
  }
  EXPECT_EQ(run(kCq, launch(11, 3, kFillU32, 4, kVa, 0, 10)), st(DescStatus::kBadContext));
}

// OP_TLB_INVALIDATE, OP_FAULT_REPLAY and OP_FAULT_CANCEL: every bad input gives its status.
TEST_F(MmuTest, InvalidateReplayCancelBadInputs) {
  Desc inv_arg3 = tlb_invalidate(0, 1, 0, kPage);
  inv_arg3.args[3] = 1;
  Desc replay_arg = fault_replay(0);
  replay_arg.args[0] = 1;
  Desc replay_arg5 = fault_replay(0);
  replay_arg5.args[5] = 1;
  Desc cancel_arg4 = fault_cancel(0, 1, 0, 1);
  cancel_arg4.args[4] = 1;
  Desc replay_flags = fault_replay(0);
  replay_flags.flags = 0x8000;
  const uint64_t top = regs::mmu::kVaLimit;
  const std::vector<std::pair<Desc, DescStatus>> cases = {
      {tlb_invalidate(0, 1, 0, 0), DescStatus::kOk},  // the whole context
      {tlb_invalidate(0, 1, top - kPage, kPage), DescStatus::kOk},
      {tlb_invalidate(0, 1, 0, top), DescStatus::kOk},
      {tlb_invalidate(0, 9, kVa, kPage), DescStatus::kOk},  // unbound: fine
      {inv_arg3, DescStatus::kBadArg},
      {tlb_invalidate(0, 1, kVa, 0), DescStatus::kBadArg},  // length 0 needs VA 0
      {tlb_invalidate(0, 1, kVa + 8, kPage), DescStatus::kBadAlign},
      {tlb_invalidate(0, 1, kVa, 100), DescStatus::kBadAlign},
      {tlb_invalidate(0, kContexts, kVa, 100), DescStatus::kBadAlign},  // before BAD_CONTEXT
      {tlb_invalidate(0, 1, top, kPage), DescStatus::kBadAddress},
      {tlb_invalidate(0, 1, top - kPage, 2 * kPage), DescStatus::kBadAddress},
      {tlb_invalidate(0, 1, kPage, ~0ULL & ~(kPage - 1)), DescStatus::kBadAddress},  // wraps
      {tlb_invalidate(0, kContexts, 0, 0), DescStatus::kBadContext},
      {fault_replay(0), DescStatus::kOk},  // nothing stalled: fine
      {replay_flags, DescStatus::kBadFlags},
      {replay_arg, DescStatus::kBadArg},
      {replay_arg5, DescStatus::kBadArg},
      {fault_cancel(0, 1, kVa, 0), DescStatus::kOk},  // matches nothing: fine
      {fault_cancel(0, 1, 0, 1), DescStatus::kOk},
      {cancel_arg4, DescStatus::kBadArg},
      {fault_cancel(0, 1, kVa, 3), DescStatus::kBadArg},
      {fault_cancel(0, 1, kVa, 1), DescStatus::kBadArg},  // mode 1 needs VA 0
      {fault_cancel(0, 1, kVa + 4, 0), DescStatus::kBadAlign},
      {fault_cancel(0, kContexts, kVa + 4, 0), DescStatus::kBadAlign},
      {fault_cancel(0, 1, top, 0), DescStatus::kBadAddress},
      {fault_cancel(0, kContexts, kVa, 0), DescStatus::kBadContext},
      {fault_cancel(0, ~0ULL, 0, 1), DescStatus::kBadContext},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Desc desc = cases[i].first;
    desc.seqno = i + 1;
    EXPECT_EQ(run(0, desc), st(cases[i].second)) << "case " << i;
  }
  EXPECT_EQ(q().fence(0), cases.size());
  EXPECT_EQ(freg(regs::freg::kPut), 0U);
}

// SPEC 4.6: translations are cached; a driver that changes a PTE without invalidating observes the
// stale translation, and OP_TLB_INVALIDATE (range or whole context) or a bind fixes it.
TEST_F(MmuTest, StaleTlbUntilInvalidate) {
  const uint64_t a = kData;
  const uint64_t b = kData + kPage;
  const uint64_t root = bind_new(1);
  bind_new(2);  // another context, to show invalidation is per context
  map_sys(root, kVa, kPage, a);
  const auto fill = [&](uint32_t value) {
    return run(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, value));
  };
  ASSERT_EQ(fill(1), st(DescStatus::kOk));
  EXPECT_EQ(word(a), 1U);
  const uint64_t vpn = kVa / kPage;
  EXPECT_EQ(gpu().tlb_entries(1, vpn, vpn + 1), 1U);

  map_sys(root, kVa, kPage, b);  // no invalidate: the device still writes A
  ASSERT_EQ(fill(2), st(DescStatus::kOk));
  EXPECT_EQ(word(a), 2U);
  EXPECT_EQ(word(b), 0U);
  ASSERT_EQ(invalidate(2), st(DescStatus::kOk));  // another context: no effect
  ASSERT_EQ(invalidate(1, kVa + kPage, 16 * kPage), st(DescStatus::kOk));  // not this page
  ASSERT_EQ(invalidate(1, 0, kVa), st(DescStatus::kOk));                   // ends just before it
  ASSERT_EQ(fill(3), st(DescStatus::kOk));
  EXPECT_EQ(word(a), 3U);
  EXPECT_EQ(word(b), 0U);

  ASSERT_EQ(invalidate(1, kVa, kPage), st(DescStatus::kOk));
  EXPECT_EQ(gpu().tlb_entries(1, vpn, vpn + 1), 0U);
  ASSERT_EQ(fill(4), st(DescStatus::kOk));
  EXPECT_EQ(word(a), 3U);
  EXPECT_EQ(read<uint32_t>(b, kPerPage), std::vector<uint32_t>(kPerPage, 4));

  // Back to A: stale until the whole context is invalidated.
  map_sys(root, kVa, kPage, a);
  ASSERT_EQ(fill(5), st(DescStatus::kOk));
  EXPECT_EQ(word(b), 5U);
  ASSERT_EQ(invalidate(1), st(DescStatus::kOk));
  ASSERT_EQ(fill(6), st(DescStatus::kOk));
  EXPECT_EQ(word(a), 6U);
  EXPECT_EQ(word(b), 5U);

  // Binding the context again (same root) drops its entries too.
  map_sys(root, kVa, kPage, b);
  ASSERT_EQ(run(0, ctx_bind(++seq_, 1, root)), st(DescStatus::kOk));
  ASSERT_EQ(fill(7), st(DescStatus::kOk));
  EXPECT_EQ(word(b), 7U);

  // A downgrade to read-only without invalidating keeps the stale writable translation.
  map_sys(root, kVa, kPage, b, /*writable=*/false);
  ASSERT_EQ(fill(8), st(DescStatus::kOk));
  EXPECT_EQ(word(b), 8U);
  enable_faults();
  ASSERT_EQ(invalidate(1, kVa, kPage), st(DescStatus::kOk));
  const uint32_t index = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 9));
  ASSERT_TRUE(wait_faults(1));
  EXPECT_EQ(fault_entry(0).type, kTypeWriteProtected);
  ASSERT_EQ(run(0, fault_cancel(++seq_, 1, kVa, 0)), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, index + 1));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kMmuFault));
  EXPECT_EQ(word(b), 8U);
}

// SPEC 4.6: OP_TLB_INVALIDATE completes only after the wave that holds the old translation has
// finished its accesses, and that wave writes through the old translation. Deterministic: the
// engine is held inside its wave by a test hook.
TEST_F(MmuTest, InvalidateWaitsForWaveInFlight) {
  const uint64_t a = kData;
  const uint64_t b = kData + kPage;
  const uint64_t root = bind_new(1);
  map_sys(root, kVa, kPage, a);
  WaveGate gate(gpu());
  const uint32_t index = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 0x11));
  ASSERT_TRUE(gate.wait_entered());
  map_sys(root, kVa, kPage, b);
  const uint32_t inv = submit(0, tlb_invalidate(++seq_, 1, kVa, kPage));
  // The control queue goes on with other work up to the invalidate, which waits for the wave.
  EXPECT_FALSE(q().wait_tail(0, inv + 1, 150));
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kTail), 0U);
  gate.release();
  ASSERT_TRUE(q().wait_tail(0, inv + 1));
  ASSERT_TRUE(q().wait_irq(0));
  ASSERT_TRUE(q().wait_tail(kCq, index + 1));
  ASSERT_TRUE(q().wait_irq(kCq));
  EXPECT_EQ(q().desc_status(0, inv), st(DescStatus::kOk));
  EXPECT_EQ(read<uint32_t>(a, kPerPage), std::vector<uint32_t>(kPerPage, 0x11));
  EXPECT_EQ(word(b), 0U);
  // Translations made after the invalidate use the new table.
  ASSERT_EQ(run(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 0x22)), st(DescStatus::kOk));
  EXPECT_EQ(word(a), 0x11U);
  EXPECT_EQ(word(b), 0x22U);
}

// SPEC 4.6 under load: launches stream increments through a mapping while the driver remaps it and
// invalidates. Every increment lands exactly once (old or new page), and once the invalidate's
// FENCE is seen the old pages never change again.
TEST_F(MmuTest, InvalidateStressOldPagesFrozenAfterFence) {
  constexpr uint64_t kPages = 64;  // 4 waves per launch
  constexpr uint64_t kCount = kPages * kPerPage;
  constexpr uint32_t kLaunches = 200;
  const uint64_t a = kData;
  const uint64_t b = kData + kPages * kPage;
  const uint64_t root = bind_new(1);
  map_sys(root, kVa, kPages * kPage, a);
  std::vector<Desc> descs;
  for (uint32_t i = 0; i < kLaunches; ++i) {
    descs.push_back(launch(i + 1, 1, kIncrementU32, kCount, kVa, 0, 1));
  }
  descs.back().flags = regs::kFlagIrq;
  const uint32_t head = q().submit(kCq, descs);
  // Let some launches through, then move the mapping to B while they run.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  while (q().qreg32(kCq, regs::qreg::kTail) < 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  map_sys(root, kVa, kPages * kPage, b);
  ASSERT_EQ(invalidate(1, kVa, kPages * kPage), st(DescStatus::kOk));
  const std::vector<uint32_t> frozen = read<uint32_t>(a, kCount);
  ASSERT_TRUE(q().wait_tail(kCq, head, 30 * kWaitMs));
  ASSERT_TRUE(q().wait_irq(kCq));
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kErrors), 0U);
  const std::vector<uint32_t> old_pages = read<uint32_t>(a, kCount);
  const std::vector<uint32_t> new_pages = read<uint32_t>(b, kCount);
  EXPECT_EQ(old_pages, frozen) << "a write through a dropped translation after the FENCE";
  for (uint64_t i = 0; i < kCount; i += 97) {
    EXPECT_EQ(old_pages[i] + new_pages[i], kLaunches) << "element " << i;
  }
  EXPECT_GE(old_pages[0], 5U);
  EXPECT_GT(new_pages[kCount - 1], 0U) << "the remap came too late to test anything";
}

// SPEC 4.8: a launch on an unmapped page reports one entry with the right fields, raises
// FAULT_VECTOR and stalls its queue; the driver maps the page and replays; the launch completes
// with the right result and the queue goes on.
TEST_F(MmuTest, NotPresentFaultThenMapAndReplay) {
  enable_faults();
  const uint64_t root = bind_new(3);
  const uint64_t before =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count());
  const uint32_t index = submit(kCq, launch(++seq_, 3, kFillU32, kPerPage, kVa, 0, 0xabcd));
  const uint32_t nop_index = submit(kCq, nop(++seq_));
  ASSERT_TRUE(wait_faults(1));
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq);
  EXPECT_EQ(freg(regs::freg::kDropped), 0U);
  EXPECT_EQ(freg(regs::freg::kStatus), 0U);
  const FaultEntry e = fault_entry(0);
  EXPECT_EQ(e.va, kVa);
  EXPECT_EQ(e.context, 3U);
  EXPECT_EQ(e.access, kAccessWrite);
  EXPECT_EQ(e.type, kTypeNotPresent);
  EXPECT_EQ(e.engine, kCq);
  EXPECT_GE(e.timestamp, before);  // the model's clock is the host's steady clock
  EXPECT_NE(e.stall, 0U);
  // Stalled: neither the launch nor the NOP behind it completes.
  EXPECT_FALSE(q().wait_tail(kCq, 1, 100));
  EXPECT_EQ(q().desc_status(kCq, index), 0U);

  // Replaying without servicing faults again: the same page is reported again, as a new stall.
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(wait_faults(2));
  EXPECT_EQ(fault_entry(1).va, kVa);
  EXPECT_GT(fault_entry(1).stall, e.stall);
  EXPECT_EQ(take_faults().size(), 2U);

  map_sys(root, kVa, kPage, kData);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, nop_index + 1));
  ASSERT_TRUE(q().wait_irq(kCq));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kOk));
  EXPECT_EQ(arg5(kCq, index), 0U);
  EXPECT_EQ(q().desc_status(kCq, nop_index), st(DescStatus::kOk));
  EXPECT_EQ(read<uint32_t>(kData, kPerPage), std::vector<uint32_t>(kPerPage, 0xabcd));
  EXPECT_EQ(freg(regs::freg::kStalled), 0U);
  EXPECT_EQ(freg(regs::freg::kPut), 2U);
  EXPECT_FALSE(q().wait_irq(kFaultVector, 0));
}

// A not-present entry at each level (3: no root entry; 2; 1; 0: no leaf) is a NOT_PRESENT fault,
// whatever else the not-present entry holds.
TEST_F(MmuTest, NotPresentAtEveryLevel) {
  enable_faults();
  const uint64_t root = bind_new(1);
  const uint64_t va3 = 0x0000'4000'0000'0000ULL;  // root index 128: nothing below
  const uint64_t va0 = 0x0000'0000'4020'1000ULL;
  map_sys(root, va0 + kPage, kPage, kData);  // directories for va0 exist, its leaf not
  const uint64_t va1 = va0 + 2 * kMiB;       // level-1 entry missing
  const uint64_t va2 = va0 + 1 * kGiB;       // level-2 entry missing
  store64(entry_gpa(root, va0), 0xfff0'0000'0000'0ffeULL);  // VALID clear: the rest is ignored
  uint32_t put = 0;
  for (const uint64_t va : {va3, va2, va1, va0}) {
    const uint32_t index = submit(kCq, launch(++seq_, 1, kSumU64, 1, va));
    ASSERT_TRUE(wait_faults(++put)) << std::hex << va;
    const FaultEntry e = fault_entry(put - 1);
    EXPECT_EQ(e.va, va);
    EXPECT_EQ(e.access, kAccessRead);
    EXPECT_EQ(e.type, kTypeNotPresent);
    map_sys(root, va, kPage, kData + 8 * kPage);
    std::memset(at(kData + 8 * kPage), 0, kPage);
    store64(kData + 8 * kPage, 0x1234 + put);
    ASSERT_EQ(replay(), st(DescStatus::kOk));
    ASSERT_TRUE(q().wait_tail(kCq, index + 1));
    ASSERT_TRUE(q().wait_irq(kCq));
    EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kOk));
    EXPECT_EQ(arg5(kCq, index), 0x1234U + put);
  }
  EXPECT_EQ(take_faults().size(), 4U);
}

// SPEC 4.8: a write to a read-only page is a WRITE_PROTECTED fault (also through a cached read-only
// translation, which it drops); setting WRITE needs no invalidate, only a replay.
TEST_F(MmuTest, WriteProtectedThenUpgradeAndReplay) {
  enable_faults();
  const uint64_t root = bind_new(2);
  write<uint32_t>(kData, std::vector<uint32_t>(kPerPage, 5));
  map_sys(root, kVa, kPage, kData, /*writable=*/false);
  // Reading is fine and caches the read-only translation.
  ASSERT_EQ(run(kCq, launch(++seq_, 2, kChecksum, 16, kVa)), st(DescStatus::kOk));
  const uint64_t vpn = kVa / kPage;
  EXPECT_EQ(gpu().tlb_entries(2, vpn, vpn + 1), 1U);
  const uint32_t index = submit(kCq, launch(++seq_, 2, kIncrementU32, kPerPage, kVa, 0, 1));
  ASSERT_TRUE(wait_faults(1));
  const FaultEntry e = fault_entry(0);
  EXPECT_EQ(e.va, kVa);
  EXPECT_EQ(e.context, 2U);
  EXPECT_EQ(e.access, kAccessWrite);
  EXPECT_EQ(e.type, kTypeWriteProtected);
  EXPECT_EQ(gpu().tlb_entries(2, vpn, vpn + 1), 0U);  // the fault dropped it
  EXPECT_EQ(word(kData), 5U);
  // Not upgraded yet: the replay faults again, without a cached entry.
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(wait_faults(2));
  EXPECT_EQ(fault_entry(1).type, kTypeWriteProtected);
  map_sys(root, kVa, kPage, kData, /*writable=*/true);  // upgrade; no invalidate
  EXPECT_EQ(take_faults().size(), 2U);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, index + 1));
  ASSERT_TRUE(q().wait_irq(kCq));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kOk));
  EXPECT_EQ(read<uint32_t>(kData, kPerPage), std::vector<uint32_t>(kPerPage, 6));
}

// SPEC 4.8: OP_FAULT_CANCEL mode 0 cancels only a launch that faulted on that page of that
// context, mode 1 every stalled launch of the context; a cancelled launch completes with
// ST_MMU_FAULT, ARG5 = the page, its interrupt, and the waves before it stay performed.
TEST_F(MmuTest, CancelModes) {
  enable_faults();
  const uint64_t root = bind_new(4);
  bind_new(5);
  // 20 pages: the first wave (16 pages) is mapped, the second (pages 16..19) is not.
  map_sys(root, kVa, 16 * kPage, kData);
  const uint32_t index = submit(kCq, launch(++seq_, 4, kFillU32, 20 * kPerPage, kVa, 0, 7));
  const uint32_t nop_index = submit(kCq, nop(++seq_));
  ASSERT_TRUE(wait_faults(4));
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(fault_entry(i).va, kVa + (16 + i) * kPage);
  }
  EXPECT_EQ(take_faults().size(), 4U);
  // No match: another page, another context, a page of the wave that did not fault.
  ASSERT_EQ(run(0, fault_cancel(++seq_, 4, kVa + 20 * kPage, 0)), st(DescStatus::kOk));
  ASSERT_EQ(run(0, fault_cancel(++seq_, 5, kVa + 17 * kPage, 0)), st(DescStatus::kOk));
  ASSERT_EQ(run(0, fault_cancel(++seq_, 5, 0, 1)), st(DescStatus::kOk));
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq);
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kTail), 0U);
  // The match: visible when the cancel's FENCE is.
  ASSERT_EQ(run(0, fault_cancel(++seq_, 4, kVa + 17 * kPage, 0)), st(DescStatus::kOk));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kMmuFault));
  EXPECT_EQ(arg5(kCq, index), kVa + 17 * kPage);
  EXPECT_EQ(freg(regs::freg::kStalled), 0U);
  ASSERT_TRUE(q().wait_irq(kCq));
  ASSERT_TRUE(q().wait_tail(kCq, nop_index + 1));
  EXPECT_EQ(q().desc_status(kCq, nop_index), st(DescStatus::kOk));
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kErrors), 1U);
  EXPECT_EQ(read<uint32_t>(kData, 16 * kPerPage), std::vector<uint32_t>(16 * kPerPage, 7));

  // Mode 1: ARG5 is the lowest faulting page of the stalled wave.
  const uint32_t second = submit(kCq, launch(++seq_, 4, kSumF32, 4 * kPerPage, kVa + 30 * kPage));
  ASSERT_TRUE(wait_faults(8));
  EXPECT_EQ(take_faults().size(), 4U);
  ASSERT_EQ(run(0, fault_cancel(++seq_, 4, 0, 1)), st(DescStatus::kOk));
  EXPECT_EQ(q().desc_status(kCq, second), st(DescStatus::kMmuFault));
  EXPECT_EQ(arg5(kCq, second), kVa + 30 * kPage);
}

// SPEC 4.8: OP_FAULT_CANCEL mode 2 cancels a launch only while it is still stalled on the stall
// its entries name: a cancel meant for a stall that ended (here: replayed and stalled again)
// leaves the new stall alone, which mode 0 would not.
TEST_F(MmuTest, CancelByStall) {
  enable_faults();
  bind_new(4);
  const uint32_t index = submit(kCq, launch(++seq_, 4, kFillU32, 2 * kPerPage, kVa, 0, 7));
  ASSERT_TRUE(wait_faults(2));
  const std::vector<FaultEntry> first = take_faults();
  ASSERT_EQ(first.size(), 2U);
  EXPECT_EQ(first[0].stall, first[1].stall);  // one wave, one stall
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(wait_faults(4));
  const std::vector<FaultEntry> again = take_faults();
  ASSERT_EQ(again.size(), 2U);
  EXPECT_NE(again[0].stall, first[0].stall);

  Desc stale = fault_cancel(++seq_, 4, kVa, 2);
  stale.args[3] = first[0].stall;
  ASSERT_EQ(run(0, stale), st(DescStatus::kOk));
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq);
  Desc other_page = fault_cancel(++seq_, 4, kVa + 5 * kPage, 2);
  other_page.args[3] = again[0].stall;
  ASSERT_EQ(run(0, other_page), st(DescStatus::kOk));
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq);
  Desc current = fault_cancel(++seq_, 4, kVa + kPage, 2);
  current.args[3] = again[0].stall;
  ASSERT_EQ(run(0, current), st(DescStatus::kOk));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kMmuFault));
  EXPECT_EQ(arg5(kCq, index), kVa + kPage);
  EXPECT_EQ(freg(regs::freg::kStalled), 0U);

  // ARG3 is the stall in mode 2 only.
  Desc mode0_arg3 = fault_cancel(++seq_, 4, kVa, 0);
  mode0_arg3.args[3] = 1;
  EXPECT_EQ(run(0, mode0_arg3), st(DescStatus::kBadArg));
  EXPECT_EQ(run(0, fault_cancel(++seq_, 4, kVa, 3)), st(DescStatus::kBadArg));
}

// SPEC 4.8: one wave translates all its pages first and reports one entry per faulting page, in
// ascending VA order, with one interrupt; pages of both operands merge, a written page is WRITE.
TEST_F(MmuTest, OneWaveReportsSeveralPages) {
  enable_faults();
  const uint64_t root = bind_new(6);
  // FILL over 20 pages: the first wave reports its 16 pages, the second wave its 4.
  const uint32_t fill = submit(kCq, launch(++seq_, 6, kFillU32, 20 * kPerPage, kVa, 0, 3));
  ASSERT_TRUE(wait_faults(16));
  EXPECT_FALSE(q().wait_irq(kFaultVector, 50)) << "one interrupt per wave";
  std::vector<FaultEntry> faults = take_faults();
  for (uint32_t i = 0; i < 16; ++i) {
    EXPECT_EQ(faults[i].va, kVa + i * kPage);
    EXPECT_EQ(faults[i].access, kAccessWrite);
  }
  map_sys(root, kVa, 16 * kPage, kData);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(wait_faults(20));
  faults = take_faults();
  ASSERT_EQ(faults.size(), 4U);
  EXPECT_EQ(faults[0].va, kVa + 16 * kPage);
  EXPECT_EQ(faults[3].va, kVa + 19 * kPage);
  map_sys(root, kVa + 16 * kPage, 4 * kPage, kData + 16 * kPage);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, fill + 1));
  EXPECT_EQ(q().desc_status(kCq, fill), st(DescStatus::kOk));
  EXPECT_EQ(read<uint32_t>(kData, 20 * kPerPage), std::vector<uint32_t>(20 * kPerPage, 3));

  // An unaligned VA: the first wave covers 17 pages.
  const uint64_t odd = kVa + 64 * kPage + 0x800;
  submit(kCq, launch(++seq_, 6, kFillU32, 16 * kPerPage, odd, 0, 3));
  ASSERT_TRUE(wait_faults(37));
  EXPECT_EQ(take_faults().size(), 17U);
  ASSERT_EQ(run(0, fault_cancel(++seq_, 6, 0, 1)), st(DescStatus::kOk));

  // COPY: x (written) and y (read) pages interleave in VA order.
  const uint64_t x = kVa + 128 * kPage;
  const uint64_t y = kVa + 129 * kPage + 0x800;  // 2 pages of y: 129, 130; x: 128, 129
  submit(kCq, launch(++seq_, 6, kCopy, kPage + 0x800, x, y));
  ASSERT_TRUE(wait_faults(37 + 3));
  faults = take_faults();
  ASSERT_EQ(faults.size(), 3U);
  EXPECT_EQ(faults[0].va, x);
  EXPECT_EQ(faults[0].access, kAccessWrite);
  EXPECT_EQ(faults[1].va, x + kPage);  // both operands: written
  EXPECT_EQ(faults[1].access, kAccessWrite);
  EXPECT_EQ(faults[2].va, x + 2 * kPage);
  EXPECT_EQ(faults[2].access, kAccessRead);
  ASSERT_EQ(run(0, fault_cancel(++seq_, 6, 0, 1)), st(DescStatus::kOk));

  // AXPY in place (va1 = va0): one entry per page, WRITE.
  submit(kCq, launch(++seq_, 6, kAxpyF32, 2 * kPerPage, x, x, 0x3f800000));
  ASSERT_TRUE(wait_faults(42));
  faults = take_faults();
  ASSERT_EQ(faults.size(), 2U);
  EXPECT_EQ(faults[0].access, kAccessWrite);
  EXPECT_EQ(faults[1].access, kAccessWrite);
  ASSERT_EQ(run(0, fault_cancel(++seq_, 6, 0, 1)), st(DescStatus::kOk));
}

// SPEC 4.8: with the buffer full, entries are dropped and counted and OVERFLOW is set; the launch
// still stalls, and the dropped pages fault again after each replay until all are serviced.
TEST_F(MmuTest, OverflowDropsCountsAndRefaults) {
  constexpr uint32_t kEntries = 4;
  enable_faults(kEntries);
  const uint64_t root = bind_new(1);
  const uint32_t index = submit(kCq, launch(++seq_, 1, kFillU32, 16 * kPerPage, kVa, 0, 0x5a));
  uint32_t put = 0;
  uint32_t dropped = 0;
  for (uint32_t round = 0; round < 4; ++round) {
    const uint32_t faulting = 16 - kEntries * round;
    put += kEntries;
    dropped += faulting - kEntries;
    ASSERT_TRUE(wait_faults(put)) << "round " << round;
    EXPECT_EQ(freg(regs::freg::kDropped), dropped) << "round " << round;
    EXPECT_EQ(freg(regs::freg::kStatus), faulting > kEntries ? regs::freg::kStatusOverflow : 0U)
        << "round " << round;
    EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq);
    const std::vector<FaultEntry> faults = take_faults(kEntries);
    ASSERT_EQ(faults.size(), kEntries);
    for (uint32_t i = 0; i < kEntries; ++i) {
      const uint64_t page = round * kEntries + i;  // the lowest pages first
      EXPECT_EQ(faults[i].va, kVa + page * kPage) << "round " << round;
      map_sys(root, kVa + page * kPage, kPage, kData + page * kPage);
    }
    ASSERT_EQ(replay(), st(DescStatus::kOk));
  }
  ASSERT_TRUE(q().wait_tail(kCq, index + 1));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kOk));
  EXPECT_EQ(read<uint32_t>(kData, 16 * kPerPage), std::vector<uint32_t>(16 * kPerPage, 0x5a));
  EXPECT_EQ(freg(regs::freg::kDropped), 24U);
  EXPECT_EQ(freg(regs::freg::kStatus), 0U);  // cleared by the replays
  EXPECT_EQ(freg(regs::freg::kPut), 16U);

  // A FAULT_GET ahead of FAULT_PUT counts as full.
  q().set_reg32(regs::freg::kGet, 16 + 5);
  submit(kCq, launch(++seq_, 1, kSumU64, 1, kVa + 100 * kPage));
  ASSERT_TRUE(q().wait_irq(kFaultVector));
  ASSERT_TRUE(q().wait_reg32(regs::freg::kDropped, 25));
  EXPECT_EQ(freg(regs::freg::kStatus), regs::freg::kStatusOverflow);
  EXPECT_EQ(freg(regs::freg::kPut), 16U);
  ASSERT_EQ(run(0, fault_cancel(++seq_, 1, kVa + 100 * kPage, 0)), st(DescStatus::kOk));
  EXPECT_EQ(last_status(kCq), st(DescStatus::kMmuFault));
}

// SPEC 3.5, 4.8: a disabled or invalid fault buffer drops every fault (BAD_CONFIG, counted), the
// launch still stalls and FAULT_VECTOR is still raised; a valid configuration then receives the
// fault on the next replay.
TEST_F(MmuTest, DisabledOrInvalidBufferDropsAndStalls) {
  const uint64_t root = bind_new(1);
  const uint32_t index = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 1));
  ASSERT_TRUE(q().wait_irq(kFaultVector));
  ASSERT_TRUE(q().wait_reg32(regs::freg::kStalled, 1U << kCq));
  EXPECT_EQ(freg(regs::freg::kDropped), 1U);
  EXPECT_EQ(freg(regs::freg::kStatus), regs::freg::kStatusBadConfig);
  EXPECT_EQ(freg(regs::freg::kPut), 0U);
  struct Config {
    uint64_t addr;
    uint32_t entries;
  };
  const std::vector<Config> bad = {
      {kFaultBuf, 3},                 // not a power of two
      {kFaultBuf, 1U << 17},          // more than 65536
      {kFaultBuf + 32, 1},            // not 4 KiB aligned
      {kRamSize, 1},                  // outside guest RAM
      {kRamSize - kPage, 256},        // runs past the end of RAM
      {~0ULL & ~(kPage - 1), 65536},  // wraps
  };
  uint32_t dropped = 1;
  for (const Config& config : bad) {
    q().set_reg64(regs::freg::kBufAddr, config.addr);
    q().set_reg32(regs::freg::kBufEntries, config.entries);
    ASSERT_EQ(replay(), st(DescStatus::kOk));
    ASSERT_TRUE(q().wait_irq(kFaultVector)) << config.entries;
    ASSERT_TRUE(q().wait_reg32(regs::freg::kDropped, ++dropped)) << config.entries;
    EXPECT_EQ(freg(regs::freg::kStatus), regs::freg::kStatusBadConfig);
    EXPECT_EQ(freg(regs::freg::kPut), 0U);
  }
  // The smallest valid buffer: one entry, at the last page of RAM.
  enable_faults(1, kRamSize - kPage);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(wait_faults(1));
  EXPECT_EQ(fault_entry(0, 1, kRamSize - kPage).va, kVa);
  EXPECT_EQ(freg(regs::freg::kStatus), 0U);
  EXPECT_EQ(take_faults(1, kRamSize - kPage).size(), 1U);
  map_sys(root, kVa, kPage, kData);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, index + 1));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kOk));
  EXPECT_EQ(word(kData), 1U);
}

// SPEC 4.3, 4.8: a stalled compute queue blocks nothing else: the control queue (and control
// requests), the copy channels, the other compute queue and the other GPU all make progress.
TEST_F(MmuTest, OtherQueuesProgressWhileStalled) {
  enable_faults();
  const uint64_t root = bind_new(1);
  map_sys(root, kVa + kMiB, kPage, kData + kMiB);
  const uint32_t index = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 4));
  ASSERT_TRUE(wait_faults(1));
  EXPECT_EQ(run(0, nop(++seq_)), st(DescStatus::kOk));
  EXPECT_EQ(run(0, write64(++seq_, kData + 2 * kMiB, 77)), st(DescStatus::kOk));
  EXPECT_EQ(load64(kData + 2 * kMiB), 77U);
  EXPECT_TRUE(q().control(0));
  EXPECT_EQ(run(kChannel, copy(++seq_, kData + 2 * kMiB, 0, 8, aperture_word(kApSysmem, kApVram))),
            st(DescStatus::kOk));
  EXPECT_EQ(run(kCq2, launch(++seq_, 1, kFillU32, kPerPage, kVa + kMiB, 0, 9)),
            st(DescStatus::kOk));
  EXPECT_EQ(word(kData + kMiB), 9U);
  EXPECT_EQ(run(kCq, nop(++seq_), 1), st(DescStatus::kOk));                 // GPU 1's compute queue
  EXPECT_EQ(run(0, tlb_invalidate(++seq_, 1, 0, 0)), st(DescStatus::kOk));  // stalls hold nothing
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kTail), 0U);
  map_sys(root, kVa, kPage, kData);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, index + 1));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kOk));
}

// Two compute queues stall at once on different contexts: their entries carry their ENGINE and
// CONTEXT, FAULT_STALLED has both bits, and each is resolved on its own.
TEST_F(MmuTest, TwoQueuesStallIndependently) {
  enable_faults();
  const uint64_t root1 = bind_new(1);
  bind_new(2);
  const uint32_t a = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 1));
  ASSERT_TRUE(wait_faults(1));
  const uint32_t b = submit(kCq2, launch(++seq_, 2, kFillU32, kPerPage, kVa, 0, 2));
  ASSERT_TRUE(wait_faults(2));
  EXPECT_EQ(freg(regs::freg::kStalled), (1U << kCq) | (1U << kCq2));
  const std::vector<FaultEntry> faults = take_faults();
  EXPECT_EQ(faults[0].engine, kCq);
  EXPECT_EQ(faults[0].context, 1U);
  EXPECT_EQ(faults[1].engine, kCq2);
  EXPECT_EQ(faults[1].context, 2U);
  ASSERT_EQ(run(0, fault_cancel(++seq_, 2, 0, 1)), st(DescStatus::kOk));
  EXPECT_EQ(q().desc_status(kCq2, b), st(DescStatus::kMmuFault));
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq);
  map_sys(root1, kVa, kPage, kData);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, a + 1));
  EXPECT_EQ(q().desc_status(kCq, a), st(DescStatus::kOk));
  EXPECT_EQ(word(kData), 1U);
}

// SPEC 4.5: unbinding a context cancels its stalled launches (ST_MMU_FAULT, ARG5 = the lowest
// faulting page) before the unbind completes; other contexts' stalls stay.
TEST_F(MmuTest, UnbindCancelsStalledLaunches) {
  enable_faults();
  bind_new(5);
  bind_new(6);
  const uint32_t a = submit(kCq, launch(++seq_, 5, kChecksum, 3 * kPage, kVa + 2 * kPage));
  ASSERT_TRUE(wait_faults(3));
  const uint32_t b = submit(kCq2, launch(++seq_, 6, kChecksum, kPage, kVa));
  ASSERT_TRUE(wait_faults(4));
  ASSERT_EQ(run(0, ctx_bind(++seq_, 5, 0)), st(DescStatus::kOk));
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kTail), a + 1);
  EXPECT_EQ(q().desc_status(kCq, a), st(DescStatus::kMmuFault));
  EXPECT_EQ(arg5(kCq, a), kVa + 2 * kPage);
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq2);
  EXPECT_EQ(q().qreg32(kCq2, regs::qreg::kTail), 0U);
  // Rebinding context 6 to a new root keeps its launch stalled; the replay uses the new table.
  const uint64_t root = new_table();
  map_sys(root, kVa, kPage, kData);
  std::memset(at(kData), 0, kPage);
  ASSERT_EQ(run(0, ctx_bind(++seq_, 6, root)), st(DescStatus::kOk));
  EXPECT_EQ(freg(regs::freg::kStalled), 1U << kCq2);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq2, b + 1));
  EXPECT_EQ(q().desc_status(kCq2, b), st(DescStatus::kOk));
  uint64_t zero_page_hash = kFnvBasis;
  for (uint64_t i = 0; i < kPage; ++i) {
    zero_page_hash = (zero_page_hash ^ 0) * kFnvPrime;
  }
  EXPECT_EQ(arg5(kCq2, b), zero_page_hash);
}

// SPEC 6: a reset discards a stalled launch (it never completes), unbinds every context, empties
// the TLB and zeroes the fault registers; the engine then works normally. A client disconnect
// does the same.
TEST_F(MmuTest, ResetDiscardsStalledLaunch) {
  enable_faults();
  const uint64_t root = bind_new(1);
  map_sys(root, kVa + kPage, kPage, kData);
  ASSERT_EQ(run(kCq2, launch(++seq_, 1, kFillU32, 1, kVa + kPage, 0, 1)), st(DescStatus::kOk));
  const uint32_t index = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 5));
  ASSERT_TRUE(wait_faults(1));
  ASSERT_TRUE(q().control(regs::kControlReset));
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kTail), 0U);
  EXPECT_EQ(q().fence(kCq), 0U);
  EXPECT_EQ(q().desc_status(kCq, index), 0U);  // never completed
  EXPECT_EQ(arg5(kCq, index), 0U);
  for (const uint32_t off : {regs::freg::kBufEntries, regs::freg::kGet, regs::freg::kPut,
                             regs::freg::kDropped, regs::freg::kStatus, regs::freg::kStalled}) {
    EXPECT_EQ(freg(off), 0U) << std::hex << off;
  }
  EXPECT_EQ(q().reg64(regs::freg::kBufAddr), 0U);
  EXPECT_EQ(gpu().tlb_entries(1, 0, regs::mmu::kVaLimit / kPage), 0U);
  EXPECT_FALSE(q().wait_irq(kCq, 50));
  // Every context is unbound.
  EXPECT_EQ(run(kCq, launch(++seq_, 1, kFillU32, 1, kVa + kPage, 0, 2)),
            st(DescStatus::kBadContext));
  // Set up again: the same queue stalls and completes normally.
  enable_faults();
  ASSERT_EQ(run(0, ctx_bind(++seq_, 1, root)), st(DescStatus::kOk));
  const uint32_t again = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 6));
  ASSERT_TRUE(wait_faults(1));
  EXPECT_EQ(take_faults().size(), 1U);
  map_sys(root, kVa, kPage, kData + kPage);
  ASSERT_EQ(replay(), st(DescStatus::kOk));
  ASSERT_TRUE(q().wait_tail(kCq, again + 1));
  EXPECT_EQ(q().desc_status(kCq, again), st(DescStatus::kOk));
  EXPECT_EQ(word(kData + kPage), 6U);

  // A disconnect with a stalled launch: the next client finds a clean device.
  submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa + 2 * kPage, 0, 7));
  ASSERT_TRUE(wait_faults(2));
  q_.at(0).reset();
  ASSERT_NO_THROW(q_.at(0) = FakeQemu::connect(rig_->emu().socket_path(0), kVectors));
  EXPECT_EQ(freg(regs::freg::kStalled), 0U);
  EXPECT_EQ(freg(regs::freg::kPut), 0U);
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kTail), 0U);
  EXPECT_EQ(run(kCq, launch(++seq_, 1, kFillU32, 1, kVa + kPage, 0, 2)),
            st(DescStatus::kBadContext));
  EXPECT_EQ(run(kCq, nop(++seq_)), st(DescStatus::kOk));
}

// SPEC 4.5: translation errors are not replayable: the launch completes with the entry's status
// and ARG5 = the page VA, performs nothing of the wave, and reports no fault (even when an earlier
// page of the wave faults).
TEST_F(MmuTest, TranslationErrors) {
  enable_faults();
  // G is the last page below 512 GiB, X the first page above: their walks share no table.
  constexpr uint64_t kG = 0x0000'0080'0000'0000ULL - kPage;
  constexpr uint64_t kX = kG + kPage;
  using regs::mmu::leaf;
  struct Case {
    const char* what;
    uint32_t level;  // the entry of X that is set to `entry`
    uint64_t entry;
    DescStatus status;
  };
  const uint64_t good_table = kTablePoolEnd - kPage;  // a zeroed table to point directories at
  std::memset(at(good_table), 0, kPage);
  const std::vector<Case> cases = {
      {"leaf bit 2", 0, leaf(kData, kApSysmem, true) | (1ULL << 2), DescStatus::kBadPte},
      {"leaf bit 5", 0, leaf(kData, kApSysmem, true) | (1ULL << 5), DescStatus::kBadPte},
      {"leaf bit 11", 0, leaf(kData, kApSysmem, true) | (1ULL << 11), DescStatus::kBadPte},
      {"leaf bit 60", 0, leaf(kData, kApSysmem, true) | (1ULL << 60), DescStatus::kBadPte},
      {"leaf bit 63", 0, leaf(kData, kApSysmem, true) | (1ULL << 63), DescStatus::kBadPte},
      {"aperture 3", 0, leaf(kData, 3, true), DescStatus::kBadPte},
      {"peer without AP_PEER", 0, leaf(0, kApVram, true, 1), DescStatus::kBadPte},
      {"reserved bit and bad address", 0, leaf(kRamSize, kApSysmem, true) | (1ULL << 6),
       DescStatus::kBadPte},
      {"LARGE at level 1", 1, regs::mmu::directory(good_table) | regs::mmu::kLarge,
       DescStatus::kBadPte},
      {"directory bit 1", 2, regs::mmu::directory(good_table) | 2, DescStatus::kBadPte},
      {"directory bit 52", 3, regs::mmu::directory(good_table) | (1ULL << 52), DescStatus::kBadPte},
      {"directory outside RAM", 2, regs::mmu::directory(kRamSize), DescStatus::kBadAddress},
      {"directory far outside RAM", 1, regs::mmu::directory(regs::mmu::kAddrMask),
       DescStatus::kBadAddress},
      {"sysmem page outside RAM", 0, leaf(kRamSize, kApSysmem, true), DescStatus::kBadAddress},
      {"VRAM page past VRAM_SIZE", 0, leaf(kVram, kApVram, true), DescStatus::kBadVram},
      {"peer 9", 0, leaf(0, kApPeer, true, 9), DescStatus::kBadPeer},
      {"peer is itself", 0, leaf(0, kApPeer, true, 0), DescStatus::kBadPeer},
      {"peer page past its VRAM", 0, leaf(kVram, kApPeer, true, 1), DescStatus::kBadVram},
  };
  uint32_t context = 0;
  for (const Case& c : cases) {
    context = (context + 1) % kContexts;
    const uint64_t root = bind_new(context);
    write<uint32_t>(kData + kMiB, std::vector<uint32_t>(kPerPage, 0));
    map_sys(root, kG, kPage, kData + kMiB);
    store64(entry_gpa(root, kX, c.level), c.entry);
    EXPECT_EQ(run(kCq, launch(++seq_, context, kFillU32, 2 * kPerPage, kG, 0, 1)), st(c.status))
        << c.what;
    EXPECT_EQ(last_arg5(kCq), kX) << c.what;
    EXPECT_EQ(word(kData + kMiB), 0U) << c.what << ": the failing wave performed nothing";
  }
  EXPECT_EQ(freg(regs::freg::kPut), 0U);
  // G unmapped (a fault) and X bad: the error wins and no fault is reported.
  const uint64_t root = bind_new(15);
  store64(entry_gpa(root, kX), leaf(kData, 3, true));
  EXPECT_EQ(run(kCq, launch(++seq_, 15, kSumU64, 1024, kG)), st(DescStatus::kBadPte));
  EXPECT_EQ(last_arg5(kCq), kX);
  EXPECT_EQ(freg(regs::freg::kPut), 0U);
  EXPECT_EQ(freg(regs::freg::kDropped), 0U);
  EXPECT_FALSE(q().wait_irq(kFaultVector, 0));
}

// SPEC 8.1: `hang` freezes the compute engines too (a stalled launch stays stalled, a new launch
// does not run); `unhang` carries out everything pending, the replay included.
TEST_F(MmuTest, HangFreezesComputeEngines) {
  enable_faults();
  const uint64_t root = bind_new(1);
  map_sys(root, kVa + kMiB, kPage, kData + kMiB);
  const uint32_t stalled = submit(kCq, launch(++seq_, 1, kFillU32, kPerPage, kVa, 0, 1));
  ASSERT_TRUE(wait_faults(1));
  std::ofstream(rig_->control_path(), std::ios::app) << "hang 0\n";
  // Wait for the acknowledgement of the hang.
  const auto acked = [&] {
    std::ifstream in(rig_->control_path() + ".ack");
    std::string line;
    std::getline(in, line);
    return line == "1";
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  while (!acked() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(acked());
  const uint32_t running = submit(kCq2, launch(++seq_, 1, kFillU32, kPerPage, kVa + kMiB, 0, 2));
  map_sys(root, kVa, kPage, kData);
  const uint32_t replay_index = submit(0, fault_replay(++seq_));
  EXPECT_FALSE(q().wait_tail(kCq2, running + 1, 200));
  EXPECT_EQ(q().qreg32(0, regs::qreg::kTail), replay_index);
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kTail), 0U);
  EXPECT_EQ(word(kData + kMiB), 0U);
  std::ofstream(rig_->control_path(), std::ios::app) << "unhang 0\n";
  ASSERT_TRUE(q().wait_tail(kCq2, running + 1));
  ASSERT_TRUE(q().wait_tail(0, replay_index + 1));
  ASSERT_TRUE(q().wait_tail(kCq, stalled + 1));
  EXPECT_EQ(q().desc_status(kCq, stalled), st(DescStatus::kOk));
  EXPECT_EQ(q().desc_status(kCq2, running), st(DescStatus::kOk));
  EXPECT_EQ(word(kData), 1U);
  EXPECT_EQ(word(kData + kMiB), 2U);
}

}  // namespace
}  // namespace hmmgpu::test::mmu
