// SPDX-License-Identifier: GPL-2.0
// SPEC 1.2, section 4.7: the compute engine. Every kernel's result against a reference computed
// here, with operands in guest RAM, this GPU's VRAM and the peer's VRAM, scattered over pages and
// spanning waves; every bad launch descriptor; waves, failures part way, and concurrency.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <thread>

#include "mmu_fixture.h"

namespace hmmgpu::test::mmu {
namespace {

using regs::copy::aperture_word;
using regs::copy::kApPeer;
using regs::copy::kApSysmem;
using regs::copy::kApVram;
using namespace regs::launch;

constexpr uint64_t kXva = 0x10000000;
constexpr uint64_t kYva = 0x20000000;
constexpr uint8_t kGuard = 0xa5;  // the bytes of an operand's pages outside the operand

enum class Where { kSysmem, kVram, kPeer };

const char* name(Where where) {
  switch (where) {
    case Where::kSysmem:
      return "sysmem";
    case Where::kVram:
      return "vram";
    case Where::kPeer:
      return "peer";
  }
  return "?";
}

// An operand: `len` bytes at `va`, its VA pages mapped in reverse order onto `pages` physical
// pages from `phys` in `where` (VA page i -> physical page pages - 1 - i).
struct Operand {
  uint64_t va = 0;
  uint64_t len = 0;
  Where where = Where::kSysmem;
  uint64_t phys = 0;
  uint64_t pages = 0;
};

// Reproducible test data (splitmix64).
struct Rng {
  uint64_t state = 12345;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31U);
  }
};

template <typename T>
T get(const std::vector<uint8_t>& bytes, uint64_t i) {
  T value{};
  std::memcpy(&value, bytes.data() + i * sizeof(T), sizeof(T));
  return value;
}
template <typename T>
void set(std::vector<uint8_t>& bytes, uint64_t i, T value) {
  std::memcpy(bytes.data() + i * sizeof(T), &value, sizeof(T));
}

// The SPEC 4.7 table, written independently of the model: updates x, returns ARG5.
uint64_t reference(uint32_t kernel, std::vector<uint8_t>& x, const std::vector<uint8_t>& y,
                   uint64_t count, uint32_t s) {
  const auto a = std::bit_cast<float>(s);
  uint64_t result = 0;
  double sum = 0.0;
  switch (kernel) {
    case kFillU32:
      for (uint64_t i = 0; i < count; ++i) {
        set<uint32_t>(x, i, s);
      }
      break;
    case kCopy:
      std::copy(y.begin(), y.begin() + static_cast<ptrdiff_t>(count), x.begin());
      break;
    case kAxpyF32:
      for (uint64_t i = 0; i < count; ++i) {
        const float product = a * get<float>(y, i);  // -ffp-contract=off: two roundings
        set<float>(x, i, product + get<float>(x, i));
      }
      break;
    case kScaleF32:
      for (uint64_t i = 0; i < count; ++i) {
        set<float>(x, i, a * get<float>(x, i));
      }
      break;
    case kIncrementU32:
      for (uint64_t i = 0; i < count; ++i) {
        set<uint32_t>(x, i, get<uint32_t>(x, i) + s);
      }
      break;
    case kSumF32:
      for (uint64_t i = 0; i < count; ++i) {
        sum += static_cast<double>(get<float>(x, i));
      }
      result = std::bit_cast<uint64_t>(sum);
      break;
    case kSumU64:
      for (uint64_t i = 0; i < count; ++i) {
        result += get<uint64_t>(x, i);
      }
      break;
    case kChecksum:
      result = kFnvBasis;
      for (uint64_t i = 0; i < count; ++i) {
        result = (result ^ x[i]) * kFnvPrime;
      }
      break;
    default:
      ADD_FAILURE() << "no reference for kernel " << kernel;
  }
  return result;
}

class ComputeTest : public MmuFixture {
 protected:
  // Physical pages for `pages` pages in `where`: guest RAM above kData, GPU 0's VRAM, GPU 1's.
  uint64_t alloc(Where where, uint64_t pages) {
    uint64_t& next = next_phys_.at(static_cast<size_t>(where));
    const uint64_t phys = next;
    next += pages * kPage;
    EXPECT_LE(next, where == Where::kSysmem ? kRamSize : kVram) << "out of " << name(where);
    return phys;
  }

  static uint32_t aperture(Where where) {
    return where == Where::kSysmem ? kApSysmem : where == Where::kVram ? kApVram : kApPeer;
  }

  // Copies `len` bytes between guest RAM at `gpa` and `where` at `phys` through GPU 0's copy
  // engine (the peer's VRAM with AP_PEER).
  void transfer(Where where, uint64_t phys, uint64_t gpa, uint64_t len, bool to_device) {
    const uint32_t ap = aperture(where);
    const uint32_t peer = where == Where::kPeer ? 1 : 0;
    const Desc desc = to_device
                          ? copy(++seq_, gpa, phys, len, aperture_word(kApSysmem, ap, 0, peer))
                          : copy(++seq_, phys, gpa, len, aperture_word(ap, kApSysmem, peer, 0));
    ASSERT_EQ(run(kChannel, desc), st(DescStatus::kOk));
  }

  // Places `bytes` at `va` in `where` (pages reversed, kGuard around) and maps it under `root`.
  Operand place(uint64_t root, uint64_t va, const std::vector<uint8_t>& bytes, Where where) {
    Operand op{.va = va, .len = bytes.size(), .where = where, .phys = 0, .pages = 0};
    op.pages = ((va % kPage) + bytes.size() + kPage - 1) / kPage;
    op.phys = alloc(where, op.pages);
    std::vector<uint8_t> image(op.pages * kPage, kGuard);
    for (uint64_t i = 0; i < bytes.size(); ++i) {
      image[offset_in_image(op, i)] = bytes[i];
    }
    for (uint64_t i = 0; i < op.pages; ++i) {
      set_pte(root, (va & ~(kPage - 1)) + i * kPage,
              regs::mmu::leaf(op.phys + (op.pages - 1 - i) * kPage, aperture(where), true,
                              where == Where::kPeer ? 1 : 0));
    }
    if (where == Where::kSysmem) {
      write(op.phys, image);
    } else {
      write(kStaging, image);
      transfer(where, op.phys, kStaging, image.size(), true);
    }
    return op;
  }

  // The operand's bytes as they are now; checks that nothing around them changed.
  std::vector<uint8_t> fetch(const Operand& op) {
    std::vector<uint8_t> image;
    if (op.where == Where::kSysmem) {
      image = read<uint8_t>(op.phys, op.pages * kPage);
    } else {
      transfer(op.where, op.phys, kStaging, op.pages * kPage, false);
      image = read<uint8_t>(kStaging, op.pages * kPage);
    }
    std::vector<uint8_t> bytes(op.len);
    for (uint64_t i = 0; i < op.len; ++i) {
      bytes[i] = image[offset_in_image(op, i)];
      image[offset_in_image(op, i)] = kGuard;
    }
    EXPECT_EQ(image, std::vector<uint8_t>(image.size(), kGuard)) << "bytes around the operand";
    return bytes;
  }

  static uint64_t offset_in_image(const Operand& op, uint64_t i) {
    const uint64_t in_va = (op.va % kPage) + i;
    return (op.pages - 1 - in_va / kPage) * kPage + in_va % kPage;
  }

  std::array<uint64_t, 3> next_phys_{kData, 0, 0};
  Rng rng_;
};

std::vector<uint8_t> random_bytes(Rng& rng, uint64_t len) {
  std::vector<uint8_t> bytes(len);
  for (uint8_t& b : bytes) {
    b = static_cast<uint8_t>(rng.next());
  }
  return bytes;
}

// Floats in [-1000, 1000], with a few subnormals, zeros and negative zeros among them.
std::vector<uint8_t> random_floats(Rng& rng, uint64_t count) {
  std::vector<uint8_t> bytes(count * 4);
  for (uint64_t i = 0; i < count; ++i) {
    float value =
        static_cast<float>(static_cast<int64_t>(rng.next() % 2000001) - 1000000) / 1000.0F;
    if (i % 997 == 5) {
      value = 1e-41F;  // subnormal
    } else if (i % 991 == 7) {
      value = -0.0F;
    }
    set<float>(bytes, i, value);
  }
  return bytes;
}

struct KernelCase {
  const char* name;
  uint32_t kernel;
  uint64_t size;
  uint64_t count;
  uint64_t x_off;  // page offset of va0: most cases cross pages unaligned
  bool has_y;
  uint64_t y_off;
  uint32_t scalar;
};

const std::vector<KernelCase>& kernel_cases() {
  static const std::vector<KernelCase> cases = {
      {"FILL_U32", kFillU32, 4, 20000, 0x7f0, false, 0, 0xdeadbeef},  // 2 waves
      {"COPY", kCopy, 1, 150001, 3, true, 0xffd, 0},                  // 3 waves
      {"AXPY_F32", kAxpyF32, 4, 20000, 0x10, true, 0xff8, std::bit_cast<uint32_t>(1.5F)},
      {"SCALE_F32", kScaleF32, 4, 20000, 0xffc, false, 0, std::bit_cast<uint32_t>(-0.75F)},
      {"INCREMENT_U32", kIncrementU32, 4, 20000, 0x400, false, 0, 0xfffffff0},  // wraps
      {"SUM_F32", kSumF32, 4, 40000, 0x800, false, 0, 0},                       // 3 waves
      {"SUM_U64", kSumU64, 8, 20000, 0x8, false, 0, 0},
      {"CHECKSUM", kChecksum, 1, 150001, 0x123, false, 0, 0},
  };
  return cases;
}

// No descriptor of `queue` failed.
void descs_done(const FakeQemu& fq, uint32_t queue, std::atomic<int>& failures) {
  if (fq.qreg32(queue, regs::qreg::kErrors) != 0) {
    ++failures;
  }
}

class ComputeKernels : public ComputeTest, public ::testing::WithParamInterface<Where> {};

// Every kernel with x in the parameter's memory and y in another one (sysmem -> VRAM -> peer ->
// sysmem), unaligned and page-crossing, pages scattered, over several waves: the result and every
// byte of x match the reference, y and the bytes around both are untouched.
TEST_P(ComputeKernels, ResultsMatchReference) {
  const Where x_where = GetParam();
  const Where y_where = x_where == Where::kSysmem ? Where::kVram
                        : x_where == Where::kVram ? Where::kPeer
                                                  : Where::kSysmem;
  for (const KernelCase& c : kernel_cases()) {
    SCOPED_TRACE(c.name);
    const uint64_t root = bind_new(1);  // a fresh table each time (the bind drops the TLB)
    const bool floats = c.kernel == kAxpyF32 || c.kernel == kScaleF32 || c.kernel == kSumF32;
    std::vector<uint8_t> x =
        floats ? random_floats(rng_, c.count) : random_bytes(rng_, c.count * c.size);
    const std::vector<uint8_t> y = !c.has_y ? std::vector<uint8_t>{}
                                   : floats ? random_floats(rng_, c.count)
                                            : random_bytes(rng_, c.count * c.size);
    const Operand x_op = place(root, kXva + c.x_off, x, x_where);
    Operand y_op;
    if (c.has_y) {
      y_op = place(root, kYva + c.y_off, y, y_where);
    }
    const uint64_t expected = reference(c.kernel, x, y, c.count, c.scalar);
    ASSERT_EQ(run(kCq, launch(++seq_, 1, c.kernel, c.count, x_op.va, y_op.va, c.scalar)),
              st(DescStatus::kOk));
    EXPECT_EQ(last_arg5(kCq), expected);
    EXPECT_EQ(fetch(x_op), x);
    if (c.has_y) {
      EXPECT_EQ(fetch(y_op), y);
    }
  }
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kErrors), 0U);
}

INSTANTIATE_TEST_SUITE_P(Apertures, ComputeKernels,
                         ::testing::Values(Where::kSysmem, Where::kVram, Where::kPeer),
                         [](const ::testing::TestParamInfo<Where>& info) {
                           return std::string(name(info.param));
                         });

// GPU 1 computes in GPU 0's VRAM (AP_PEER, peer 0) and GPU 0 sees the result.
TEST_F(ComputeTest, PeerFromTheOtherGpu) {
  constexpr uint64_t kCount = 3000;
  const std::vector<uint8_t> data = random_bytes(rng_, kCount * 4);
  write(kStaging, data);
  ASSERT_EQ(run(kChannel,
                copy(++seq_, kStaging, 0x100000, data.size(), aperture_word(kApSysmem, kApVram))),
            st(DescStatus::kOk));
  const uint64_t root = bind_new(2, /*gpu=*/1);
  for (uint64_t i = 0; i < 4; ++i) {
    set_pte(root, kXva + i * kPage, regs::mmu::leaf(0x100000 + i * kPage, kApPeer, true, 0));
  }
  ASSERT_EQ(run(kCq2, launch(++seq_, 2, kIncrementU32, kCount, kXva, 0, 7), 1),
            st(DescStatus::kOk));
  ASSERT_EQ(run(kCq2, launch(++seq_, 2, kChecksum, kCount * 4, kXva), 1), st(DescStatus::kOk));
  std::vector<uint8_t> expected = data;
  reference(kIncrementU32, expected, {}, kCount, 7);
  std::vector<uint8_t> tmp = expected;
  EXPECT_EQ(last_arg5(kCq2, 1), reference(kChecksum, tmp, {}, kCount * 4, 0));
  ASSERT_EQ(run(kChannel,
                copy(++seq_, 0x100000, kStaging, data.size(), aperture_word(kApVram, kApSysmem))),
            st(DescStatus::kOk));
  EXPECT_EQ(read<uint8_t>(kStaging, data.size()), expected);
}

// AXPY_F32 in place (va1 = va0) gives x = a*x + x element by element; SCALE by 0 gives (signed)
// zeros; a launch without the IRQ flag raises no interrupt.
TEST_F(ComputeTest, InPlaceAndNoIrq) {
  constexpr uint64_t kCount = 5000;
  const uint64_t root = bind_new(1);
  std::vector<uint8_t> x = random_floats(rng_, kCount);
  const Operand op = place(root, kXva + 0x40, x, Where::kSysmem);
  const auto a = std::bit_cast<uint32_t>(-2.25F);
  ASSERT_EQ(run(kCq, launch(++seq_, 1, kAxpyF32, kCount, op.va, op.va, a)), st(DescStatus::kOk));
  const std::vector<uint8_t> y = x;
  reference(kAxpyF32, x, y, kCount, a);
  EXPECT_EQ(fetch(op), x);
  const uint32_t head = q().submit(kCq, {launch(++seq_, 1, kScaleF32, kCount, op.va, 0, 0)});
  ASSERT_TRUE(q().wait_tail(kCq, head));
  EXPECT_EQ(q().desc_status(kCq, head - 1), st(DescStatus::kOk));
  EXPECT_FALSE(q().wait_irq(kCq, 50));
  reference(kScaleF32, x, {}, kCount, 0);
  EXPECT_EQ(fetch(op), x);
}

// The largest launch: count x size = 256 MiB (65536 pages, all mapped onto one page).
TEST_F(ComputeTest, LargestLaunchSumU64) {
  constexpr uint64_t kPages = kMaxBytes / kPage;
  const uint64_t root = bind_new(1);
  std::vector<uint64_t> page(kPage / 8);
  uint64_t page_sum = 0;
  for (uint64_t i = 0; i < page.size(); ++i) {
    page[i] = 0x9e3779b97f4a7c15ULL * (i + 1);
    page_sum += page[i];
  }
  write(kData, page);
  for (uint64_t i = 0; i < kPages; ++i) {
    set_pte(root, kXva + i * kPage, regs::mmu::leaf(kData, kApSysmem, false));
  }
  const uint32_t head =
      q().submit(kCq, {launch(++seq_, 1, kSumU64, kMaxBytes / 8, kXva, 0, 0, regs::kFlagIrq),
                       launch(++seq_, 1, kSumU64, kMaxBytes / 8 + 1, kXva, 0, 0, regs::kFlagIrq)});
  ASSERT_TRUE(q().wait_tail(kCq, head, 60 * kWaitMs));
  EXPECT_EQ(q().desc_status(kCq, head - 2), st(DescStatus::kOk));
  EXPECT_EQ(arg5(kCq, head - 2), page_sum * kPages);
  EXPECT_EQ(q().desc_status(kCq, head - 1), st(DescStatus::kBadArg));
}

// Every bad OP_LAUNCH completes with its SPEC 4.7 status (first in table order) and ARG5, touches
// nothing, and never stalls the queue; OP_LAUNCH on queue 0 or a channel is ST_BAD_OPCODE and
// leaves ARG5 alone.
TEST_F(ComputeTest, BadLaunchDescriptors) {
  const uint64_t root = bind_new(1);
  write<uint32_t>(kData, std::vector<uint32_t>(4 * kPage / 4, 0x77));
  map_sys(root, kXva, 4 * kPage, kData);
  const uint64_t top = regs::mmu::kVaLimit;
  map_sys(root, top - kPage, kPage, kData + 8 * kPage);  // the last page below 2^48
  const auto with = [](Desc desc, size_t arg, uint64_t value) {
    desc.args.at(arg) = value;
    return desc;
  };
  Desc flags = launch(0, 1, kFillU32, 4, kXva, 0, 1);
  flags.flags = 0x10;
  struct Case {
    Desc desc;
    DescStatus status;
    uint64_t arg5;
  };
  const std::vector<Case> cases = {
      {flags, DescStatus::kBadFlags, 0},
      {with(launch(0, 1, kFillU32, 4, kXva, 0, 1), 5, 1), DescStatus::kBadArg, 0},
      {launch(0, 1, 0, 4, kXva), DescStatus::kBadArg, 0},
      {launch(0, 1, 9, 4, kXva), DescStatus::kBadArg, 0},
      {launch(0, 1, 0xffffffff, 4, kXva), DescStatus::kBadArg, 0},
      {launch(0, 1, kFillU32, 0, kXva, 0, 1), DescStatus::kBadArg, 0},
      {launch(0, 1, kFillU32, kMaxBytes / 4 + 1, kXva, 0, 1), DescStatus::kBadArg, 0},
      {launch(0, 1, kCopy, kMaxBytes + 1, kXva, kYva), DescStatus::kBadArg, 0},
      {launch(0, 1, kSumU64, 1ULL << 61, kXva), DescStatus::kBadArg, 0},  // x 8 overflows
      {launch(0, 1, kSumU64, ~0ULL, kXva), DescStatus::kBadArg, 0},
      {launch(0, 1, kFillU32, 4, kXva, kYva, 1), DescStatus::kBadArg, 0},  // no y
      {launch(0, 1, kSumF32, 4, kXva, 0, 1), DescStatus::kBadArg, 0},      // no scalar
      {launch(0, 1, kCopy, 4, kXva, kYva, 1), DescStatus::kBadArg, 0},
      {launch(0, 1, kFillU32, 4, kXva, 0, 1ULL << 32), DescStatus::kBadArg, 0},
      {launch(0, 1, kAxpyF32, 4, kXva + 2, kYva, 1ULL << 40), DescStatus::kBadArg, 0},
      {launch(0, 1, kFillU32, 4, kXva + 2, 0, 1), DescStatus::kBadAlign, kXva + 2},
      {launch(0, 1, kAxpyF32, 4, kXva, kYva + 1, 1), DescStatus::kBadAlign, kYva + 1},
      {launch(0, 1, kAxpyF32, 4, kXva + 1, kYva + 1, 1), DescStatus::kBadAlign, kXva + 1},
      {launch(0, 1, kSumU64, 4, kXva + 4), DescStatus::kBadAlign, kXva + 4},
      {launch(0, 1, kSumU64, 4, top + 4), DescStatus::kBadAlign, top + 4},  // before ADDRESS
      {launch(0, kContexts, kFillU32, 4, kXva + 2, 0, 1), DescStatus::kBadAlign, kXva + 2},
      {launch(0, 1, kFillU32, 4, top, 0, 1), DescStatus::kBadAddress, top},
      {launch(0, 1, kFillU32, 2048, top - kPage, 0, 1), DescStatus::kBadAddress, top - kPage},
      {launch(0, 1, kFillU32, 1024, top - kPage, 0, 1), DescStatus::kOk, 0},         // ends at 2^48
      {launch(0, 1, kChecksum, 16, ~0ULL - 7), DescStatus::kBadAddress, ~0ULL - 7},  // wraps
      {launch(0, 1, kCopy, 16, kXva, top - 8), DescStatus::kBadAddress, top - 8},
      {launch(0, 1, kCopy, 16, top, top + 64), DescStatus::kBadAddress, top},
      {launch(0, kContexts, kCopy, 16, kXva, top), DescStatus::kBadAddress, top},
      {launch(0, 1, kCopy, 200, kXva, kXva + 100), DescStatus::kOverlap, kXva},
      {launch(0, 1, kCopy, 200, kXva + 100, kXva), DescStatus::kOverlap, kXva + 100},
      {launch(0, 1, kCopy, 1, kXva, kXva), DescStatus::kOverlap, kXva},
      {launch(0, kContexts, kCopy, 2, kXva, kXva + 1), DescStatus::kOverlap, kXva},
      {launch(0, kContexts, kFillU32, 4, kXva, 0, 1), DescStatus::kBadContext, 0},
      {launch(0, 0xffffffff, kFillU32, 4, kXva, 0, 1), DescStatus::kBadContext, 0},
      {launch(0, 2, kFillU32, 4, kXva, 0, 1), DescStatus::kBadContext, 0},  // unbound
      {launch(0, 1, kCopy, 100, kXva, kXva + 100), DescStatus::kOk, 0},     // adjacent: fine
  };
  uint32_t errors = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    Desc desc = cases[i].desc;
    desc.seqno = i + 1;
    EXPECT_EQ(run(kCq, desc), st(cases[i].status)) << "case " << i;
    EXPECT_EQ(last_arg5(kCq), cases[i].arg5) << "case " << i;
    errors += cases[i].status != DescStatus::kOk ? 1 : 0;
  }
  EXPECT_EQ(q().qreg32(kCq, regs::qreg::kErrors), errors);
  EXPECT_EQ(read<uint32_t>(kData, kPage), std::vector<uint32_t>(kPage, 0x77));
  EXPECT_EQ(word(kData + 8 * kPage), 1U);

  // Not a compute queue: ST_BAD_OPCODE, and ARG5 is not written.
  for (const uint32_t queue : {0U, kChannel}) {
    EXPECT_EQ(run(queue, with(launch(++seq_, 1, kFillU32, 4, kXva, 0, 2), 5, 0x1234)),
              st(DescStatus::kBadOpcode));
    EXPECT_EQ(last_arg5(queue), 0x1234U);
  }
  EXPECT_EQ(word(kData), 0x77U);
}

// SPEC 4.7: a translation error in a later wave fails the launch there: the waves before it stay
// performed, nothing of the failing wave is (not even its good pages).
TEST_F(ComputeTest, FailurePartWayKeepsEarlierWaves) {
  const uint64_t root = bind_new(1);
  map_sys(root, kXva, 40 * kPage, kData);
  set_pte(root, kXva + 35 * kPage, regs::mmu::leaf(kData, kApSysmem, true) | (1ULL << 9));
  ASSERT_EQ(run(kCq, launch(++seq_, 1, kFillU32, 40 * kPage / 4, kXva, 0, 0x99)),
            st(DescStatus::kBadPte));
  EXPECT_EQ(last_arg5(kCq), kXva + 35 * kPage);
  EXPECT_EQ(read<uint32_t>(kData, 32 * kPage / 4), std::vector<uint32_t>(32 * kPage / 4, 0x99));
  EXPECT_EQ(read<uint32_t>(kData + 32 * kPage, 8 * kPage / 4),
            std::vector<uint32_t>(8 * kPage / 4, 0));
}

// SPEC 4.5: a context unbound while its launch executes fails the launch at its next wave with
// ST_BAD_CONTEXT. Deterministic: the first wave is held inside the engine while the unbind is
// submitted; the unbind waits for that wave, and the next wave starts after the unbind.
TEST_F(ComputeTest, UnbindBetweenWavesFailsNextWave) {
  const uint64_t root = bind_new(1);
  map_sys(root, kXva, 48 * kPage, kData);
  WaveGate gate(gpu());
  const uint32_t index = submit(kCq, launch(++seq_, 1, kFillU32, 48 * kPage / 4, kXva, 0, 5));
  ASSERT_TRUE(gate.wait_entered());
  const uint32_t unbind = submit(0, ctx_bind(++seq_, 1, 0));
  EXPECT_FALSE(q().wait_tail(0, unbind + 1, 100));  // waits for the wave in flight
  gate.release();
  ASSERT_TRUE(q().wait_tail(0, unbind + 1));
  ASSERT_TRUE(q().wait_tail(kCq, index + 1));
  ASSERT_TRUE(q().wait_irq(kCq));
  EXPECT_EQ(q().desc_status(kCq, index), st(DescStatus::kBadContext));
  EXPECT_EQ(arg5(kCq, index), 0U);
  EXPECT_EQ(read<uint32_t>(kData, 16 * kPage / 4), std::vector<uint32_t>(16 * kPage / 4, 5));
  EXPECT_EQ(word(kData + 16 * kPage), 0U);
}

// Both compute queues of both GPUs run launches at once, in sysmem, own VRAM and peer VRAM, with
// correct results.
TEST_F(ComputeTest, ConcurrentQueuesAndGpus) {
  constexpr uint64_t kPages = 24;
  constexpr uint64_t kCount = kPages * kPage / 4;
  constexpr uint32_t kRounds = 20;
  constexpr uint32_t kPerRound = 5;
  struct Worker {
    uint32_t gpu;
    uint32_t queue;
    uint32_t aperture;
    uint32_t peer;
    uint64_t phys;
  };
  // GPU 0: sysmem and GPU 1's VRAM; GPU 1: its own VRAM and GPU 0's VRAM.
  const std::vector<Worker> workers = {{0, kCq, kApSysmem, 0, kData},
                                       {0, kCq2, kApPeer, 1, 0},
                                       {1, kCq, kApVram, 0, 1 * kMiB},
                                       {1, kCq2, kApPeer, 0, 2 * kMiB}};
  std::array<uint64_t, kGpus> roots{bind_new(1, 0), bind_new(1, 1)};
  for (size_t w = 0; w < workers.size(); ++w) {
    map(roots.at(workers[w].gpu), kXva + w * kMiB, kPages * kPage, workers[w].aperture,
        workers[w].phys, true, workers[w].peer);
  }
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (size_t w = 0; w < workers.size(); ++w) {
      threads.emplace_back([&, w] {
        const Worker& worker = workers[w];
        FakeQemu& fq = q(worker.gpu);
        uint64_t seqno = 0;
        for (uint32_t round = 0; round < kRounds; ++round) {
          std::vector<Desc> descs;
          for (uint32_t i = 0; i < kPerRound; ++i) {
            descs.push_back(launch(++seqno, 1, kIncrementU32, kCount, kXva + w * kMiB, 0, 1));
          }
          const uint32_t head = fq.submit(worker.queue, descs);
          if (!fq.wait_tail(worker.queue, head, 10 * kWaitMs)) {
            ++failures;
            return;
          }
        }
        descs_done(fq, worker.queue, failures);
      });
    }
  }
  ASSERT_EQ(failures.load(), 0);
  for (size_t w = 0; w < workers.size(); ++w) {
    const uint32_t g = workers[w].gpu;
    ASSERT_EQ(run(kCq, launch(++seq_, 1, kSumU64, kCount / 2, kXva + w * kMiB), g),
              st(DescStatus::kOk));
    // Each u32 went from 0 to kRounds * kPerRound; pairs of them summed as u64.
    const uint64_t v = uint64_t{kRounds} * kPerRound;
    EXPECT_EQ(last_arg5(kCq, g), (kCount / 2) * (v | (v << 32))) << "worker " << w;
  }
}

}  // namespace
}  // namespace hmmgpu::test::mmu
