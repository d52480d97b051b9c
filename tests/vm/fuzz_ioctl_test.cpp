// SPDX-License-Identifier: GPL-2.0
//
// vm.fuzz-ioctl: every ioctl of include/uapi/hmmgpu.h with boundary and
// random arguments on every device (both emulated GPUs and a sysram device),
// under the debug kernel (KASAN, lockdep, DEBUG_VM, kmemleak: the runner fails
// the run on any report). Every call must succeed or fail with an errno the
// header documents for that ioctl (kOps below, transcribed from the header);
// outputs of successful calls are checked for consistency. The arguments
// point at memory the process owns as well as at garbage, so successful calls
// do real migrations and launches; afterwards each device must still migrate
// and compute correctly, and its VRAM in use must be back to 0.
//
// Boundaries: each field of each ioctl at its edges (0, 1, page - 1, ~0,
// high bits, wrapping and huge ranges, misaligned addresses, unknown flag
// bits, reserved words, the sizes of the versioned GET_COUNTERS, unknown
// numbers and directions) and arguments at NULL, kernel, unmapped, PROT_NONE,
// read-only and half-mapped addresses, each with its one errno. Random: the
// same values mixed with valid ones, clean calls among them, in a child that
// exits with work pending. ForkedChildOnParentsFiles: the same from a child
// on the parent's files (EPERM). CloseWhileInUse: threads calling while the
// descriptor is closed under them. ResidencyRunsInVram: a regression.
//
// The random part is deterministic for a seed: HMMGPU_FUZZ_SEED (default:
// from the clock, printed) and HMMGPU_FUZZ_ITERATIONS (default 15000, about
// 40 s under the debug kernel); HMMGPU_FUZZ_VERBOSE=1 prints every call
// before it is made. The summary line, at the end, is
//   fuzz-ioctl: N calls, per ioctl NAME=N(ok=N EINVAL=N ...) ..., seed S

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.h"

namespace hmmgpu::test {
namespace {

using namespace std::chrono_literals;

// The ioctls, and one entry for numbers the header does not define.
enum Op : int {
  kGetInfo,
  kNop,
  kMigrate,
  kCounters,
  kLaunch,
  kWait,
  kResidency,
  kAdvise,
  kGetAdvice,
  kUnknown,
  kNumOps
};

struct OpInfo {
  const char* name;
  unsigned long cmd;        // the header's number
  uint32_t cap;             // without this capability the ioctl is -ENOTTY
  bool mm_bound;            // acts on the opener's address space only
  std::vector<int> errnos;  // documented besides the common ones
};

// From include/uapi/hmmgpu.h. Common to every ioctl: ENOTTY (unknown number;
// an ioctl whose capability the device lacks), EFAULT, EINVAL, ENODEV.
const std::array<OpInfo, kNumOps> kOps = {{
    {"GET_INFO", HMMGPU_IOCTL_GET_INFO, 0, false, {}},
    {"NOP", HMMGPU_IOCTL_NOP, 0, false, {ETIMEDOUT, EIO, EINTR}},
    {"MIGRATE", HMMGPU_IOCTL_MIGRATE, HMMGPU_CAP_MIGRATE, true, {EPERM, EIO, EINTR, ENOMEM}},
    {"GET_COUNTERS", HMMGPU_IOCTL_GET_COUNTERS, 0, false, {E2BIG}},
    {"LAUNCH", HMMGPU_IOCTL_LAUNCH, HMMGPU_CAP_COMPUTE, true, {EBUSY, EPERM, EIO, EINTR, ENOMEM}},
    {"WAIT", HMMGPU_IOCTL_WAIT, HMMGPU_CAP_COMPUTE, true, {ENOENT, ETIME, EINTR, EPERM, EIO}},
    {"RESIDENCY", HMMGPU_IOCTL_RESIDENCY, HMMGPU_CAP_MIGRATE, true, {EPERM, EINTR, ENOMEM}},
    {"ADVISE", HMMGPU_IOCTL_ADVISE, 0, true, {EOPNOTSUPP, EPERM, ENOMEM}},
    {"GET_ADVICE", HMMGPU_IOCTL_GET_ADVICE, 0, true, {EPERM, ENOMEM}},
    {"unknown", 0, 0, false, {}},
}};

// The launch errors (hmmgpu_launch.error, hmmgpu_wait.error) the header names.
bool launch_error_ok(int32_t e) { return e == 0 || e == EFAULT || e == EIO || e == EINVAL; }

std::string errname(int ret) {
  if (ret == 0) return "ok";
  const char* n = strerrorname_np(-ret);
  return n != nullptr ? n : "E" + std::to_string(-ret);
}

// x86-64 user address space: TASK_SIZE, 47 or 56 bits less a page.
uint64_t task_size() {
  static const uint64_t ts =
      [] {
        std::ifstream in("/proc/cpuinfo");
        std::string line;
        while (std::getline(in, line))
          if (line.rfind("flags", 0) == 0) return line.find(" la57") != std::string::npos;
        return false;
      }()
          ? (uint64_t{1} << 56) - kPage
          : (uint64_t{1} << 47) - kPage;
  return ts;
}

constexpr uint64_t kKernelAddr = 0xffff800000000000;
constexpr uint64_t kOnes = ~uint64_t{0};

// Whether the page at `addr` is mapped in this process.
bool is_mapped(uint64_t addr) {
  return msync(reinterpret_cast<void*>(addr & ~uint64_t(kPage - 1)), kPage, MS_ASYNC) == 0 ||
         errno != ENOMEM;
}

// Calls per ioctl and result, and the failures, with what was called.
class Stats {
 public:
  void add(Op op, int ret) { counts_[{op, ret}]++; }
  // Time spent per ioctl, and the slowest call.
  void time(Op op, std::chrono::steady_clock::duration t, const std::string& what) {
    const double s = std::chrono::duration<double>(t).count();
    secs_[op] += s;
    if (s > slowest_) {
      slowest_ = s;
      slowest_what_ = std::string(kOps[op].name) + " " + what;
    }
  }
  [[nodiscard]] std::string timing() const {
    std::ostringstream os;
    os.precision(3);
    os << "fuzz-ioctl: seconds per ioctl";
    for (int op = 0; op < kNumOps; op++) os << " " << kOps[op].name << "=" << secs_[op];
    os << "; slowest call " << slowest_ << " s: " << slowest_what_;
    return os.str();
  }
  void fail(std::string what) {
    if (failures_.size() < 50) failures_.push_back(std::move(what));
    nfail_++;
  }
  [[nodiscard]] uint64_t failures() const { return nfail_; }
  [[nodiscard]] const std::vector<std::string>& failure_list() const { return failures_; }
  [[nodiscard]] uint64_t calls() const {
    uint64_t n = 0;
    for (const auto& [k, v] : counts_) n += v;
    return n;
  }
  // The counts as text, for a child process to hand them to its parent.
  [[nodiscard]] std::string serialize() const {
    std::ostringstream os;
    for (const auto& [k, v] : counts_) os << k.first << " " << k.second << " " << v << "\n";
    return os.str();
  }
  void merge(const std::string& text) {
    std::istringstream in(text);
    int op = 0, ret = 0;
    uint64_t v = 0;
    while (in >> op >> ret >> v) counts_[{op, ret}] += v;
  }
  void merge(const Stats& o) {
    for (const auto& [k, v] : o.counts_) counts_[k] += v;
    for (const auto& f : o.failures_) fail(f);
    nfail_ += o.nfail_ - o.failures_.size();
  }
  [[nodiscard]] std::string summary(uint64_t seed) const {
    std::ostringstream os;
    os << "fuzz-ioctl: " << calls() << " calls, per ioctl";
    for (int op = 0; op < kNumOps; op++) {
      uint64_t n = 0;
      std::ostringstream detail;
      for (const auto& [k, v] : counts_) {
        if (k.first != op) continue;
        n += v;
        detail << (detail.tellp() > 0 ? " " : "") << errname(k.second) << "=" << v;
      }
      if (n) os << " " << kOps[op].name << "=" << n << "(" << detail.str() << ")";
    }
    os << ", seed " << seed;
    return os.str();
  }

 private:
  std::map<std::pair<int, int>, uint64_t> counts_;
  std::vector<std::string> failures_;
  uint64_t nfail_ = 0;
  std::array<double, kNumOps> secs_{};
  double slowest_ = 0;
  std::string slowest_what_;
};

// One open device with what GET_INFO says of it.
struct Dev {
  Device dev;
  Fd fd;
  hmmgpu_info info{};
  std::vector<std::pair<uint32_t, uint64_t>> pending;  // launches not waited for
};

std::vector<Dev> open_devices() {
  std::vector<Dev> out;
  for (auto& d : list_devices()) {
    Dev x;
    x.dev = d;
    x.fd = Fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC));
    if (!x.fd.valid() || xioctl(x.fd.get(), HMMGPU_IOCTL_GET_INFO, &x.info) != 0) continue;
    out.push_back(std::move(x));
  }
  return out;
}

// Whether `ret` of `op` on a device with `caps` is what the header allows.
// `foreign`: the caller is not the process that opened the file; `closed`:
// the fd may be closed meanwhile. Returns why not, or "".
std::string judge(Op op, int ret, uint32_t caps, bool foreign, bool closed = false) {
  const OpInfo& o = kOps[op];
  if (closed && ret == -EBADF) return "";
  if (op == kUnknown) return ret == -ENOTTY ? "" : "an unknown ioctl must be ENOTTY";
  if (o.cap && !(caps & o.cap))
    return ret == -ENOTTY ? "" : "without its capability the ioctl must be ENOTTY";
  if (ret == 0) return foreign && o.mm_bound ? "succeeded on another process's address space" : "";
  if (ret == -EPERM)
    return foreign && o.mm_bound ? "" : "EPERM for the process that opened the file";
  if (foreign && o.mm_bound && ret != -EINVAL && ret != -EFAULT && ret != -EOPNOTSUPP &&
      ret != -ENOTTY)
    return "another process's call must fail with EPERM (or a bad-argument errno)";
  if (ret == -ENODEV || ret == -EIO || ret == -ETIMEDOUT)
    return "documented for a failed device, but no device fails here";
  if (ret == -EFAULT || ret == -EINVAL) return "";
  if (std::find(o.errnos.begin(), o.errnos.end(), -ret) != o.errnos.end()) return "";
  return "not documented for this ioctl";
}

// A mapping at a fixed address far from the process's other mappings (or
// anywhere when that is taken), unmapped on destruction: a range that runs
// past it meets unmapped space, never the process's own memory.
class Region {
 public:
  Region(uint64_t at, size_t len, int prot, int flags = MAP_PRIVATE | MAP_ANONYMOUS, int fd = -1)
      : len_(len) {
    void* p = mmap(reinterpret_cast<void*>(at), len, prot, flags | MAP_FIXED_NOREPLACE, fd, 0);
    if (p == MAP_FAILED) p = mmap(nullptr, len, prot, flags, fd, 0);
    ptr_ = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
  }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region() {
    if (ptr_ != nullptr) munmap(ptr_, len_);
  }
  [[nodiscard]] char* get() const { return ptr_; }

 private:
  char* ptr_ = nullptr;
  size_t len_;
};

// Memory the fuzzer points ioctls at: an arena of the process's own memory
// (anonymous, PROT_NONE, read-only, a hole, a shared file mapping), output
// buffers and argument buffers with unmapped space after them, and a
// read-only alias of a writable page. Each instance at its own address.
struct Memory {
  static constexpr size_t kArenaPages = 128;
  static constexpr size_t kRw = 0, kRwPages = 64;        // anonymous read-write
  static constexpr size_t kNone = 64, kNonePages = 16;   // PROT_NONE
  static constexpr size_t kRo = 80, kRoPages = 16;       // read-only, populated
  static constexpr size_t kHole = 96, kHolePages = 16;   // not mapped
  static constexpr size_t kFile = 112, kFilePages = 16;  // MAP_SHARED memfd
  static constexpr size_t kBufPages = 8;                 // out and arg

  static uint64_t next_base() {
    static std::atomic<uint64_t> n{0};
    return 0x300000000000ULL + n++ * (uint64_t{1} << 30);
  }

  Memory() : Memory(next_base(), Fd(memfd_create("fuzz-alias", MFD_CLOEXEC))) {}
  Memory(uint64_t base, Fd afd)
      : arena(base, kArenaPages * kPage, PROT_READ | PROT_WRITE),
        out(base + (16 << 20), kBufPages * kPage, PROT_READ | PROT_WRITE),
        arg(base + (32 << 20), kBufPages * kPage, PROT_READ | PROT_WRITE),
        alias_rw(base + (48 << 20), 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED,
                 ftruncate(afd.get(), 4 * kPage) == 0 ? afd.get() : -1),
        alias_ro(base + (64 << 20), 4 * kPage, PROT_READ, MAP_SHARED, afd.get()) {
    char* a = arena.get();
    if (a == nullptr) return;
    memset(a, 0x5a, kArenaPages * kPage);
    mprotect(a + kNone * kPage, kNonePages * kPage, PROT_NONE);
    mprotect(a + kRo * kPage, kRoPages * kPage, PROT_READ);
    munmap(a + kHole * kPage, kHolePages * kPage);
    Fd mfd(memfd_create("fuzz-arena", MFD_CLOEXEC));
    if (ftruncate(mfd.get(), kFilePages * kPage) == 0)
      mmap(a + kFile * kPage, kFilePages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
           mfd.get(), 0);
    // Boundary addresses, but none that this process has mapped: kernels
    // write there.
    const uint64_t ts = task_size();
    for (uint64_t b :
         {uint64_t{0}, uint64_t{1}, kPage - 1, kPage, uint64_t{0x10000}, uint64_t{0x7fffffff},
          uint64_t{0x100000000}, ts - kPage, ts - 8, ts, ts + kPage, uint64_t{1} << 47,
          uint64_t{1} << 48, uint64_t{1} << 63, kKernelAddr, kOnes, kOnes - kPage + 1})
      if (b >= ts || !is_mapped(b)) boundary.push_back(b);
  }
  [[nodiscard]] bool ok() const {
    return arena.get() != nullptr && out.get() != nullptr && arg.get() != nullptr &&
           alias_rw.get() != nullptr && alias_ro.get() != nullptr;
  }
  [[nodiscard]] uint64_t page(size_t i) const {
    return reinterpret_cast<uintptr_t>(arena.get()) + i * kPage;
  }

  Region arena;
  Region out;                      // kBufPages, nothing mapped after them
  Region arg;                      // kBufPages, nothing mapped after them
  Region alias_rw, alias_ro;       // one memfd, writable and read-only
  std::vector<uint64_t> boundary;  // addresses at the edges, not mapped
};

// Where an ioctl's argument structure lies.
enum class Place { kGood, kReadOnly, kStraddle, kNull, kKernel, kUnmapped, kProtNone, kAllOnes };

// The generator of arguments, deterministic for its seed.
class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  // A clean call: every field good, the argument where it belongs; the
  // calls that do real work.
  void set_clean(bool clean) { clean_ = clean; }
  uint64_t u64() { return rng_(); }
  uint64_t below(uint64_t n) { return n ? rng_() % n : 0; }
  bool pct(unsigned p) { return below(100) < p; }
  template <typename T>
  T pick(std::initializer_list<T> l) {
    return *(l.begin() + below(l.size()));
  }

  // A 32-bit value: `good` mostly, else a boundary or random one.
  uint32_t u32(uint32_t good, unsigned p_good = 75) {
    if (clean_ || pct(p_good)) return good;
    return pick<uint32_t>({0, 1, 2, 3, 7, 8, 9, 31, 32, 64, 65, 4095, 4096, 4097, 0x7fffffff,
                           0x80000000U, 0xffffffffU, static_cast<uint32_t>(u64()),
                           static_cast<uint32_t>(1U << below(32))});
  }
  // A 64-bit value: `good` mostly, else a boundary or random one.
  uint64_t u64(uint64_t good, unsigned p_good = 75) {
    if (clean_ || pct(p_good)) return good;
    return pick<uint64_t>({0, 1, kPage - 1, kPage, kPage + 1, 0x7fffffff, uint64_t{0x80000000},
                           uint64_t{0xffffffff}, uint64_t{0x100000000}, uint64_t{1} << 47,
                           uint64_t{1} << 48, uint64_t{1} << 63, kOnes, kOnes - kPage + 1, u64(),
                           uint64_t{1} << below(64)});
  }
  // Zero words mostly; sometimes one of them is not.
  template <size_t N>
  void reserved(__u64 (&r)[N]) {
    for (auto& w : r) w = 0;
    if (!clean_ && pct(8)) r[below(N)] = pick<uint64_t>({1, uint64_t{1} << 63, u64()});
  }

  // An address: in the arena mostly (page aligned or not), else a boundary.
  uint64_t addr(const Memory& m) {
    uint64_t a = m.page(below(Memory::kArenaPages));
    if (clean_ ? pct(80) : pct(45)) return m.page(below(Memory::kRwPages));
    if (clean_) return a;
    if (pct(50)) return a;
    if (pct(30)) return a + 1 + below(kPage - 1);
    if (pct(90)) return m.boundary[below(m.boundary.size())];
    return pct(50) ? u64() & ~uint64_t(kPage - 1) : u64();
  }
  // A length for a range at `addr`: within the arena mostly, else a boundary.
  uint64_t length(const Memory& m, uint64_t addr) {
    const uint64_t end = m.page(Memory::kArenaPages);
    if ((clean_ || pct(70)) && addr >= m.page(0) && addr < end)
      return (1 + below((end - addr + kPage - 1) / kPage)) * kPage;
    const uint64_t ts = task_size();
    return pick<uint64_t>(
        {0, 1, kPage - 1, kPage, kPage + 1, 2 * kPage, uint64_t{0x80000000}, uint64_t{0x100000000},
         ts, ts - addr, ts - addr + kPage, -addr, (kOnes - addr + 1) & ~uint64_t(kPage - 1), kOnes,
         kOnes & ~uint64_t(kPage - 1), uint64_t{1} << 47, u64() & ~uint64_t(kPage - 1)});
  }
  // A user pointer for an output array of `bytes`: good, or not quite.
  uint64_t out_ptr(const Memory& m, size_t bytes) {
    const auto out = reinterpret_cast<uintptr_t>(m.out.get());
    switch (clean_ ? 6 + below(6) : below(12)) {
      case 0:
        return 0;
      case 1:
        return kKernelAddr;
      case 2:
        return reinterpret_cast<uintptr_t>(m.alias_ro.get());
      case 3:
        return m.page(Memory::kNone);
      case 4:
        return m.page(Memory::kHole);
      case 5:  // one byte short of room before the guard page
        return out + 8 * kPage - std::min(bytes, 8 * kPage) + 1;
      case 6:  // in the arena: maybe in the very range, maybe in VRAM
        return m.page(below(Memory::kRwPages)) + below(kPage);
      default:
        return out + below(kPage);
    }
  }
  Place place() {
    if (clean_ || pct(80)) return Place::kGood;
    return pick<Place>({Place::kReadOnly, Place::kStraddle, Place::kNull, Place::kKernel,
                        Place::kUnmapped, Place::kProtNone, Place::kAllOnes});
  }

 private:
  std::mt19937_64 rng_;
  bool clean_ = false;
};

// Runs ioctls on the devices and judges them.
class Fuzzer {
 public:
  Fuzzer(std::vector<Dev>& devs, Memory& mem, Stats& stats, bool foreign)
      : devs_(devs), mem_(mem), stats_(stats), foreign_(foreign) {}

  // One ioctl with `bytes` of argument at `place`; returns its result and,
  // for a good place, the argument afterwards in `arg`.
  int call(Dev& d, Op op, unsigned long cmd, void* arg, size_t bytes, Place place,
           const std::string& what) {
    void* p = arg;
    char* argbuf = mem_.arg.get();
    switch (place) {
      case Place::kGood:
        p = argbuf + (bytes <= 8 * kPage - 64 ? (last_off_ = (last_off_ + 8) % 64) : 0);
        memcpy(p, arg, bytes);
        break;
      case Place::kReadOnly:
        memcpy(mem_.alias_rw.get(), arg, std::min(bytes, 4 * kPage));
        p = mem_.alias_ro.get();
        break;
      case Place::kStraddle:  // the last byte on the guard page
        p = argbuf + 8 * kPage - std::max<size_t>(bytes, 1) + 1;
        memcpy(p, arg, std::max<size_t>(bytes, 1) - 1);
        break;
      case Place::kNull:
        p = nullptr;
        break;
      case Place::kKernel:
        p = reinterpret_cast<void*>(kKernelAddr);
        break;
      case Place::kUnmapped:
        p = reinterpret_cast<void*>(mem_.page(Memory::kHole));
        break;
      case Place::kProtNone:
        p = reinterpret_cast<void*>(mem_.page(Memory::kNone));
        break;
      case Place::kAllOnes:
        p = reinterpret_cast<void*>(kOnes);
        break;
    }
    static const bool verbose = env_long("HMMGPU_FUZZ_VERBOSE", 0) != 0;
    if (verbose)
      fprintf(stderr, "fuzz-ioctl: %s %s place %d: %s\n", d.dev.node.c_str(), kOps[op].name,
              static_cast<int>(place), what.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    const int ret = xioctl(d.fd.get(), cmd, p);
    stats_.time(op, std::chrono::steady_clock::now() - t0, what);
    if (place == Place::kGood) memcpy(arg, p, bytes);
    stats_.add(op, ret);
    const std::string why = judge(op, ret, d.info.caps, foreign_, may_be_closed_);
    if (!why.empty()) {
      std::ostringstream os;
      os << d.dev.node << " " << kOps[op].name << " cmd 0x" << std::hex << cmd << std::dec << " -> "
         << errname(ret) << ": " << why << " [" << what << "]";
      stats_.fail(os.str());
    }
    return ret;
  }
  // call() that must return `want`.
  int expect(Dev& d, Op op, unsigned long cmd, void* arg, size_t bytes, Place place, int want,
             const std::string& what) {
    const int ret = call(d, op, cmd, arg, bytes, place, what);
    if (ret != want)
      stats_.fail(d.dev.node + " " + kOps[op].name + " [" + what + "]: got " + errname(ret) +
                  ", want " + errname(want));
    return ret;
  }
  void set_may_be_closed(bool v) { may_be_closed_ = v; }
  void check(bool ok, const Dev& d, Op op, const std::string& what) {
    if (!ok) stats_.fail(d.dev.node + " " + kOps[op].name + ": " + what);
  }

  void random_op(Gen& g, Dev& d) {
    const Op op = static_cast<Op>(g.below(kNumOps));
    g.set_clean(g.pct(40));
    switch (op) {
      case kGetInfo:
        return get_info(g, d);
      case kNop:
        return nop(g, d);
      case kMigrate:
        return migrate(g, d);
      case kCounters:
        return counters(g, d);
      case kLaunch:
        return launch(g, d);
      case kWait:
        return wait(g, d);
      case kResidency:
        return residency(g, d);
      case kAdvise:
        return advise(g, d);
      case kGetAdvice:
        return get_advice(g, d);
      default:
        return unknown(g, d);
    }
  }

  void get_info(Gen& g, Dev& d) {
    hmmgpu_info a{};
    memset(&a, 0xa5, sizeof(a));  // output only: garbage in is fine
    const Place pl = g.place();
    if (call(d, kGetInfo, HMMGPU_IOCTL_GET_INFO, &a, sizeof(a), pl, "") == 0 &&
        pl == Place::kGood) {
      check(a.index == d.info.index && a.pad == 0 && a.reserved[0] == 0 && a.reserved[5] == 0 &&
                memchr(a.name, 0, sizeof(a.name)) != nullptr &&
                a.uapi_version == HMMGPU_UAPI_VERSION,
            d, kGetInfo, "output differs from the first GET_INFO or is not zero-padded");
    }
  }

  void nop(Gen& g, Dev& d) {
    hmmgpu_nop a{};
    a.flags = g.u32(0, 92);
    a.count = g.u32(1 + static_cast<uint32_t>(g.below(g.pct(5) ? HMMGPU_NOP_MAX : 8)));
    a.queue = g.u32(static_cast<uint32_t>(g.below(d.info.num_queues)));
    a.pad = g.u32(0, 92);
    g.reserved(a.reserved);
    call(d, kNop, HMMGPU_IOCTL_NOP, &a, sizeof(a), g.place(), describe(a));
  }

  void migrate(Gen& g, Dev& d) {
    hmmgpu_migrate a{};
    a.addr = g.addr(mem_);
    a.length = g.length(mem_, a.addr);
    a.flags = g.u32(g.pct(60) ? HMMGPU_MIGRATE_TO_DEVICE : HMMGPU_MIGRATE_TO_SYSTEM, 85);
    a.pad = g.u32(0, 92);
    const uint64_t npages = a.length / kPage;
    a.status = g.pct(30) ? 0 : g.out_ptr(mem_, npages);
    a.migrated = g.u64();  // outputs: ignored on input
    a.resident = g.u64();
    a.failed = g.u64();
    g.reserved(a.reserved);
    const Place pl = g.place();
    const std::string what = describe(a);
    if (call(d, kMigrate, HMMGPU_IOCTL_MIGRATE, &a, sizeof(a), pl, what) == 0 &&
        pl == Place::kGood) {
      check(a.migrated + a.resident + a.failed == npages, d, kMigrate,
            "migrated + resident + failed != pages [" + what + "]");
      if (a.status != 0 && a.status >= reinterpret_cast<uintptr_t>(mem_.out.get()) &&
          a.status + npages <= reinterpret_cast<uintptr_t>(mem_.out.get()) + 8 * kPage) {
        const auto* st = reinterpret_cast<const uint8_t*>(a.status);
        uint64_t moved = 0;
        for (uint64_t i = 0; i < npages; i++) {
          check(st[i] <= HMMGPU_PAGE_OTHER_DEVICE, d, kMigrate, "status out of range");
          moved += st[i] == HMMGPU_PAGE_MIGRATED;
        }
        check(moved == a.migrated, d, kMigrate, "status disagrees with migrated");
      }
    }
  }

  void counters(Gen& g, Dev& d) {
    // Any size from 0 to the largest _IOC_SIZE; GET_COUNTERS is versioned.
    std::vector<uint8_t> buf(8 * kPage - 64, 0);
    const size_t cur = sizeof(hmmgpu_counters);
    size_t size = g.pick<size_t>({cur, cur, cur, HMMGPU_COUNTERS_SIZE_V1, cur + 8, cur + 64, 0, 1,
                                  8, HMMGPU_COUNTERS_SIZE_V1 - 8, HMMGPU_COUNTERS_SIZE_V1 + 8,
                                  cur - 8, 4096, (1U << _IOC_SIZEBITS) - 1,
                                  static_cast<size_t>(g.below(1U << _IOC_SIZEBITS))});
    size = std::min(size, buf.size());
    if (g.pct(10) && size >= 4) buf[0] = 1;                           // flags
    if (g.pct(10) && size > cur) buf[cur + g.below(size - cur)] = 1;  // past ours
    if (g.pct(5) && size >= offsetof(hmmgpu_counters, fault_batches))
      buf[offsetof(hmmgpu_counters, reserved)] = 1;
    const unsigned long cmd =
        _IOC(_IOC_READ | _IOC_WRITE, HMMGPU_IOCTL_MAGIC, _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS), size);
    const Place pl = g.place();
    const int ret = call(d, kCounters, cmd, buf.data(), size, pl, "size " + std::to_string(size));
    if (size < HMMGPU_COUNTERS_SIZE_V1 && !(may_be_closed_ && ret == -EBADF))
      check(ret == -EINVAL, d, kCounters, "a size below V1 must be EINVAL");
  }

  void launch(Gen& g, Dev& d) {
    hmmgpu_launch a{};
    a.flags = g.u32(g.pct(50) ? HMMGPU_LAUNCH_WAIT : 0, 90);
    a.kernel = g.u32(1 + static_cast<uint32_t>(g.below(8)), 90);
    a.stream = g.u32(static_cast<uint32_t>(g.below(std::max(d.info.num_streams, 1U))), 90);
    a.pad = g.u32(0, 92);
    const bool has_y = a.kernel == HMMGPU_KERNEL_COPY || a.kernel == HMMGPU_KERNEL_AXPY_F32;
    const bool has_s = a.kernel == HMMGPU_KERNEL_FILL_U32 || a.kernel == HMMGPU_KERNEL_AXPY_F32 ||
                       a.kernel == HMMGPU_KERNEL_SCALE_F32 ||
                       a.kernel == HMMGPU_KERNEL_INCREMENT_U32;
    a.count = g.u64(1 + g.below(g.pct(80) ? 4096 : 64 * kPage), 85);
    a.x = g.addr(mem_);
    if (g.pct(70)) a.x &= ~7ULL;
    a.y = has_y ? (g.pct(80) ? mem_.page(32 + g.below(32)) : g.addr(mem_)) : g.u64(0, 92);
    if (has_y && a.kernel == HMMGPU_KERNEL_COPY && g.pct(80)) a.x = mem_.page(g.below(32));
    a.scalar = has_s ? g.u64(g.below(1U << 31), 90) : g.u64(0, 92);
    a.fence = g.u64();
    a.error = static_cast<int32_t>(g.u64());
    a.result = g.u64();
    g.reserved(a.reserved);
    const Place pl = g.place();
    const std::string what = describe(a);
    const int ret = call(d, kLaunch, HMMGPU_IOCTL_LAUNCH, &a, sizeof(a), pl, what);
    if (ret != 0 || pl != Place::kGood) return;
    if (a.flags & HMMGPU_LAUNCH_WAIT) {
      check(launch_error_ok(a.error) && a.pad2 == 0, d, kLaunch,
            "launch error " + std::to_string(a.error) + " [" + what + "]");
      check(a.error == EFAULT || a.fault_addr == 0, d, kLaunch, "fault_addr without EFAULT");
    } else {
      d.pending.emplace_back(a.stream, a.fence);
    }
  }

  void wait(Gen& g, Dev& d) {
    hmmgpu_wait a{};
    size_t idx = SIZE_MAX;
    if (!d.pending.empty() && g.pct(75)) {
      idx = g.below(d.pending.size());
      a.stream = d.pending[idx].first;
      a.fence = d.pending[idx].second;
    } else {
      a.stream = g.u32(static_cast<uint32_t>(g.below(std::max(d.info.num_streams, 1U))), 80);
      a.fence = g.u64(g.below(64), 60);
    }
    a.flags = g.u32(0, 92);
    a.timeout_ns = g.pick<uint64_t>({0, 1, 1000000, 100000000, kOnes, kOnes});
    g.reserved(a.reserved);
    const Place pl = g.place();
    const std::string what = describe(a);
    const int ret = call(d, kWait, HMMGPU_IOCTL_WAIT, &a, sizeof(a), pl, what);
    if (ret == 0 && pl == Place::kGood)
      check(launch_error_ok(a.error) && a.pad == 0, d, kWait,
            "wait error " + std::to_string(a.error) + " [" + what + "]");
    // A launch's results are returned once (also when they could not be
    // written back); one not pending any more is forgotten.
    if (idx != SIZE_MAX &&
        (ret == 0 || ret == -ENOENT || (ret == -EFAULT && pl == Place::kReadOnly)))
      d.pending.erase(d.pending.begin() + static_cast<long>(idx));
  }

  void residency(Gen& g, Dev& d) {
    hmmgpu_residency a{};
    a.addr = g.addr(mem_);
    a.length = g.length(mem_, a.addr);
    a.max_runs = g.u32(1 + static_cast<uint32_t>(g.below(g.pct(50) ? 4 : 256)));
    a.runs = g.out_ptr(mem_, std::min<uint64_t>(a.max_runs, 1U << 20) * sizeof(hmmgpu_run));
    a.nruns = static_cast<uint32_t>(g.u64());
    a.next = g.u64();
    a.flags = g.u32(0, 92);
    a.pad = g.u32(0, 92);
    g.reserved(a.reserved);
    const Place pl = g.place();
    const std::string what = describe(a);
    const int ret = call(d, kResidency, HMMGPU_IOCTL_RESIDENCY, &a, sizeof(a), pl, what);
    if ((ret != 0 && ret != -EFAULT) || pl != Place::kGood) return;
    const uint64_t end = a.addr + a.length;
    if (ret == 0) {
      check(a.nruns <= a.max_runs && a.next > a.addr && a.next <= end, d, kResidency,
            "nruns/next out of range [" + what + "]");
    }
    const auto ob = reinterpret_cast<uintptr_t>(mem_.out.get());
    if (ret != 0 || a.runs < ob || a.runs + a.nruns * sizeof(hmmgpu_run) > ob + 8 * kPage) return;
    const auto* r = reinterpret_cast<const hmmgpu_run*>(a.runs);
    uint64_t at = a.addr;
    for (uint32_t i = 0; i < a.nruns; i++) {
      check(r[i].addr == at && r[i].npages > 0 && r[i].location <= HMMGPU_LOC_DEVICE &&
                r[i].mapping <= HMMGPU_MAP_SYSTEM && (r[i].flags & ~HMMGPU_RUN_WRITE) == 0,
            d, kResidency, "run " + std::to_string(i) + " malformed [" + what + "]");
      at += r[i].npages * kPage;
    }
    check(at == a.next, d, kResidency, "runs do not end at next [" + what + "]");
  }

  void advise(Gen& g, Dev& d) {
    hmmgpu_advise a{};
    a.addr = g.addr(mem_);
    a.length = g.length(mem_, a.addr);
    a.advice = g.u32(1 + static_cast<uint32_t>(g.below(7)), 85);
    a.flags = g.u32(0, 92);
    g.reserved(a.reserved);
    call(d, kAdvise, HMMGPU_IOCTL_ADVISE, &a, sizeof(a), g.place(), describe(a));
  }

  void get_advice(Gen& g, Dev& d) {
    hmmgpu_range_advice a{};
    a.addr = g.addr(mem_);
    a.length = g.length(mem_, a.addr);
    a.flags = g.u32(0, 92);
    a.preferred = static_cast<uint32_t>(g.u64());
    a.preferred_device = static_cast<uint32_t>(g.u64());
    a.pad = static_cast<uint32_t>(g.u64());
    a.accessed_by = g.u64();
    g.reserved(a.reserved);
    const Place pl = g.place();
    if (call(d, kGetAdvice, HMMGPU_IOCTL_GET_ADVICE, &a, sizeof(a), pl, describe(a)) == 0 &&
        pl == Place::kGood)
      check(a.preferred <= HMMGPU_PREFERRED_DEVICE && a.pad == 0 &&
                (a.preferred == HMMGPU_PREFERRED_DEVICE || a.preferred_device == 0),
            d, kGetAdvice, "output out of range");
  }

  // Numbers the header does not define: other numbers, directions, sizes
  // and magics (not the VFS's own, which never reach the driver).
  void unknown(Gen& g, Dev& d) {
    static const unsigned kDirs[] = {_IOC_NONE, _IOC_READ, _IOC_WRITE, _IOC_READ | _IOC_WRITE};
    unsigned long cmd;
    for (;;) {
      const unsigned type = g.pct(70) ? HMMGPU_IOCTL_MAGIC : g.pick<unsigned>({0xc5, 0xc7, 'x'});
      const unsigned nr = g.pct(60) ? static_cast<unsigned>(g.below(0x0a)) : g.below(256);
      const unsigned dir = kDirs[g.below(4)];
      const size_t size = g.pick<size_t>(
          {0, 8, sizeof(hmmgpu_info), sizeof(hmmgpu_nop), sizeof(hmmgpu_migrate),
           sizeof(hmmgpu_launch), sizeof(hmmgpu_wait), sizeof(hmmgpu_residency),
           sizeof(hmmgpu_advise), sizeof(hmmgpu_range_advice), sizeof(hmmgpu_counters),
           static_cast<size_t>(g.below(1U << _IOC_SIZEBITS))});
      cmd = _IOC(dir, type, nr, size);
      bool known = false;
      for (int op = 0; op < kUnknown; op++) known |= kOps[op].cmd == cmd;
      const bool counters = type == HMMGPU_IOCTL_MAGIC &&
                            nr == _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS) &&
                            dir == (_IOC_READ | _IOC_WRITE);
      if (!known && !counters) break;
    }
    std::array<uint8_t, 512> buf{};
    call(d, kUnknown, cmd, buf.data(), 0, g.pick<Place>({Place::kGood, Place::kNull}), "");
  }

  // Wait for every launch still pending on `d`.
  void drain(Dev& d) {
    for (auto [stream, fence] : d.pending) {
      hmmgpu_wait w{};
      w.stream = stream;
      w.fence = fence;
      w.timeout_ns = kOnes;
      const int ret = xioctl(d.fd.get(), HMMGPU_IOCTL_WAIT, &w);
      stats_.add(kWait, ret);
      check(ret == 0 || ret == -ENOENT, d, kWait, "draining: " + errname(ret));
    }
    d.pending.clear();
  }

 public:
  static std::string hex(uint64_t v) {
    char b[24];
    snprintf(b, sizeof(b), "0x%" PRIx64, v);
    return b;
  }
  static std::string describe(const hmmgpu_nop& a) {
    return "flags " + hex(a.flags) + " count " + std::to_string(a.count) + " queue " +
           std::to_string(a.queue) + " pad " + hex(a.pad) + " reserved0 " + hex(a.reserved[0]);
  }
  static std::string describe(const hmmgpu_migrate& a) {
    return "addr " + hex(a.addr) + " length " + hex(a.length) + " flags " + hex(a.flags) +
           " status " + hex(a.status);
  }
  static std::string describe(const hmmgpu_launch& a) {
    return "flags " + hex(a.flags) + " kernel " + std::to_string(a.kernel) + " stream " +
           std::to_string(a.stream) + " count " + hex(a.count) + " x " + hex(a.x) + " y " +
           hex(a.y) + " scalar " + hex(a.scalar);
  }
  static std::string describe(const hmmgpu_wait& a) {
    return "flags " + hex(a.flags) + " stream " + std::to_string(a.stream) + " fence " +
           hex(a.fence) + " timeout " + hex(a.timeout_ns);
  }
  static std::string describe(const hmmgpu_residency& a) {
    return "addr " + hex(a.addr) + " length " + hex(a.length) + " runs " + hex(a.runs) +
           " max_runs " + std::to_string(a.max_runs);
  }
  static std::string describe(const hmmgpu_advise& a) {
    return "addr " + hex(a.addr) + " length " + hex(a.length) + " advice " +
           std::to_string(a.advice) + " flags " + hex(a.flags);
  }
  static std::string describe(const hmmgpu_range_advice& a) {
    return "addr " + hex(a.addr) + " length " + hex(a.length) + " flags " + hex(a.flags);
  }

 private:
  std::vector<Dev>& devs_;
  Memory& mem_;
  Stats& stats_;
  bool foreign_;
  bool may_be_closed_ = false;
  size_t last_off_ = 0;
};

// Every call of the suite, printed once at the end.
Stats& all_stats() {
  static Stats s;
  return s;
}

// The runs of [addr, addr + len) as `fd` reports them (nothing on error).
std::vector<hmmgpu_run> runs_of(int fd, uint64_t addr, uint64_t len) {
  std::vector<hmmgpu_run> runs(1024);
  hmmgpu_residency r{};
  r.addr = addr;
  r.length = len;
  r.runs = reinterpret_cast<uintptr_t>(runs.data());
  r.max_runs = static_cast<uint32_t>(runs.size());
  if (xioctl(fd, HMMGPU_IOCTL_RESIDENCY, &r) != 0) return {};
  runs.resize(r.nruns);
  return runs;
}

// The same pages in the same places; with `mapping`, also mapped alike by
// the device (a fork changes that: COW write-protects the pages).
bool same_runs(const std::vector<hmmgpu_run>& a, const std::vector<hmmgpu_run>& b,
               bool mapping = true) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [&](const hmmgpu_run& x, const hmmgpu_run& y) {
           return mapping ? memcmp(&x, &y, sizeof(x)) == 0
                          : x.addr == y.addr && x.npages == y.npages && x.location == y.location &&
                                x.device == y.device;
         });
}

std::string runs_text(const std::vector<hmmgpu_run>& runs) {
  std::ostringstream os;
  for (const auto& r : runs)
    os << " [" << Fuzzer::hex(r.addr) << "+" << r.npages << " loc " << r.location << " dev "
       << r.device << " map " << r.mapping << "]";
  return os.str();
}

// The structured cases: each field of each ioctl at its boundaries, each
// with the one errno the header gives for it.
void boundaries(Fuzzer& fz, Memory& mem, Dev& d) {
  const uint64_t ts = task_size();
  const uint64_t rw = mem.page(Memory::kRw);
  const std::initializer_list<Place> bad_places = {Place::kNull,     Place::kKernel,
                                                   Place::kUnmapped, Place::kProtNone,
                                                   Place::kAllOnes,  Place::kStraddle};
  const bool compute = d.info.caps & HMMGPU_CAP_COMPUTE;
  fill(reinterpret_cast<char*>(rw), Memory::kRwPages, 5);

  // GET_INFO: output only; every bad place is EFAULT, also read-only memory.
  {
    hmmgpu_info a{};
    for (Place pl : bad_places)
      fz.expect(d, kGetInfo, HMMGPU_IOCTL_GET_INFO, &a, sizeof(a), pl, -EFAULT, "place");
    fz.expect(d, kGetInfo, HMMGPU_IOCTL_GET_INFO, &a, sizeof(a), Place::kReadOnly, -EFAULT,
              "read-only");
    fz.expect(d, kGetInfo, HMMGPU_IOCTL_GET_INFO, &a, sizeof(a), Place::kGood, 0, "good");
  }

  // NOP
  auto nop = [&](const std::function<void(hmmgpu_nop&)>& mut, int want, const std::string& what,
                 Place pl = Place::kGood) {
    hmmgpu_nop a{};
    a.count = 1;
    mut(a);
    fz.expect(d, kNop, HMMGPU_IOCTL_NOP, &a, sizeof(a), pl, want, "nop " + what);
  };
  for (unsigned b = 0; b < 32; b++)
    nop([&](auto& a) { a.flags = 1U << b; }, -EINVAL, "flags bit " + std::to_string(b));
  nop([](auto& a) { a.count = 0; }, -EINVAL, "count 0");
  nop([](auto& a) { a.count = HMMGPU_NOP_MAX + 1; }, -EINVAL, "count max+1");
  nop([](auto& a) { a.count = ~0U; }, -EINVAL, "count ~0");
  nop([](auto& a) { a.count = 0x80000001U; }, -EINVAL, "count high bit");
  nop([](auto& a) { a.count = HMMGPU_NOP_MAX; }, 0, "count max");
  nop([&](auto& a) { a.queue = d.info.num_queues; }, -EINVAL, "queue num_queues");
  nop([](auto& a) { a.queue = ~0U; }, -EINVAL, "queue ~0");
  nop([](auto& a) { a.queue = 0x80000000U; }, -EINVAL, "queue high bit");
  nop([&](auto& a) { a.queue = d.info.num_queues - 1; }, 0, "last queue");
  nop([](auto& a) { a.pad = 1; }, -EINVAL, "pad");
  for (unsigned i = 0; i < 4; i++) {
    nop([&](auto& a) { a.reserved[i] = 1; }, -EINVAL, "reserved " + std::to_string(i));
    nop([&](auto& a) { a.reserved[i] = uint64_t{1} << 63; }, -EINVAL,
        "reserved high " + std::to_string(i));
  }
  for (Place pl : bad_places) nop([](auto&) {}, -EFAULT, "place", pl);
  nop([](auto&) {}, -EFAULT, "read-only", Place::kReadOnly);

  // GET_COUNTERS: versioned by size.
  {
    const size_t cur = sizeof(hmmgpu_counters), v1 = HMMGPU_COUNTERS_SIZE_V1;
    std::vector<uint8_t> buf(cur + 128, 0);
    auto cnt = [&](size_t size, int want, const std::string& what, Place pl = Place::kGood,
                   unsigned dir = _IOC_READ | _IOC_WRITE) {
      const unsigned long cmd =
          _IOC(dir, HMMGPU_IOCTL_MAGIC, _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS), size);
      std::vector<uint8_t> b = buf;
      b.resize(std::max(size, b.size()), 0);
      fz.expect(d, dir == (_IOC_READ | _IOC_WRITE) ? kCounters : kUnknown, cmd, b.data(), size, pl,
                want, "counters size " + std::to_string(size) + " " + what);
    };
    for (size_t sz : {size_t{0}, size_t{1}, size_t{8}, v1 - 8, v1 - 1}) cnt(sz, -EINVAL, "");
    for (size_t sz : {v1, v1 + 8, cur - 8, cur, cur + 8, cur + 128, size_t{4096},
                      size_t{(1U << _IOC_SIZEBITS) - 1}})
      cnt(sz, 0, "zero");
    buf[cur + 3] = 1;
    cnt(cur + 8, -E2BIG, "nonzero past ours");
    cnt(cur + 128, -E2BIG, "nonzero past ours");
    cnt(cur, 0, "nonzero past the size");
    buf[cur + 3] = 0;
    buf[0] = 1;
    cnt(cur, -EINVAL, "flags");
    buf[0] = 0;
    buf[offsetof(hmmgpu_counters, reserved) + 17] = 1;
    cnt(cur, -EINVAL, "reserved");
    buf[offsetof(hmmgpu_counters, reserved) + 17] = 0;
    cnt(v1 - 8, -EINVAL, "below V1 at a bad place", Place::kNull);
    for (Place pl : bad_places) cnt(cur, -EFAULT, "place", pl);
    cnt(cur, -EFAULT, "read-only", Place::kReadOnly);
    for (unsigned dir : {_IOC_NONE, _IOC_READ, _IOC_WRITE})
      cnt(cur, -ENOTTY, "direction", Place::kGood, dir);
    // An older program's structure: nothing is written past its end.
    std::vector<uint8_t> old(cur + 64, 0xee);
    memset(old.data(), 0, v1);
    const unsigned long cmd =
        _IOC(_IOC_READ | _IOC_WRITE, HMMGPU_IOCTL_MAGIC, _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS), v1);
    fz.expect(d, kCounters, cmd, old.data(), v1, Place::kNull, -EFAULT, "V1 at NULL");
    const int ret = xioctl(d.fd.get(), cmd, old.data());
    all_stats().add(kCounters, ret);
    fz.check(
        ret == 0 && std::all_of(old.begin() + v1, old.end(), [](uint8_t c) { return c == 0xee; }),
        d, kCounters, "a V1 structure was written past its end");
  }

  // MIGRATE
  auto mig = [&](uint64_t addr, uint64_t len, uint32_t flags, uint64_t status, int want,
                 const std::string& what, const std::function<void(hmmgpu_migrate&)>& mut = {},
                 Place pl = Place::kGood) {
    hmmgpu_migrate a{};
    a.addr = addr;
    a.length = len;
    a.flags = flags;
    a.status = status;
    if (mut) mut(a);
    fz.expect(d, kMigrate, HMMGPU_IOCTL_MIGRATE, &a, sizeof(a), pl, want, "migrate " + what);
    return a;
  };
  const uint32_t to_dev = HMMGPU_MIGRATE_TO_DEVICE, to_sys = HMMGPU_MIGRATE_TO_SYSTEM;
  if (d.info.caps & HMMGPU_CAP_MIGRATE) {
    mig(rw, kPage, 0, 0, -EINVAL, "flags 0");
    mig(rw, kPage, to_dev | to_sys, 0, -EINVAL, "both directions");
    for (unsigned b = 2; b < 32; b++)
      mig(rw, kPage, to_dev | (1U << b), 0, -EINVAL, "flags bit " + std::to_string(b));
    mig(rw, kPage, to_dev, 0, -EINVAL, "pad", [](auto& a) { a.pad = 1; });
    for (unsigned i = 0; i < 4; i++)
      mig(rw, kPage, to_dev, 0, -EINVAL, "reserved " + std::to_string(i),
          [&](auto& a) { a.reserved[i] = 1; });
    mig(rw + 1, kPage, to_dev, 0, -EINVAL, "addr +1");
    mig(rw + kPage - 1, kPage, to_dev, 0, -EINVAL, "addr +page-1");
    for (uint64_t len : {uint64_t{0}, uint64_t{1}, kPage - 1, kPage + 1, kOnes})
      mig(rw, len, to_dev, 0, -EINVAL, "length " + Fuzzer::hex(len));
    mig(rw, -rw, to_dev, 0, -EINVAL, "addr + length wraps to 0");
    mig(rw, kOnes & ~uint64_t(kPage - 1), to_dev, 0, -EINVAL, "addr + length wraps");
    mig(kOnes - kPage + 1, 2 * kPage, to_dev, 0, -EINVAL, "last page + 1");
    mig(ts, kPage, to_dev, 0, -EINVAL, "at TASK_SIZE");
    mig(ts - kPage, 2 * kPage, to_dev, 0, -EINVAL, "across TASK_SIZE");
    mig(kKernelAddr, kPage, to_dev, 0, -EINVAL, "kernel address");
    mig(uint64_t{1} << 63, kPage, to_sys, 0, -EINVAL, "bit 63");
    if (!is_mapped(ts - kPage)) mig(ts - kPage, kPage, to_dev, 0, -EFAULT, "last user page");
    mig(0, kPage, to_dev, 0, -EFAULT, "page 0");
    mig(mem.page(Memory::kHole), kPage, to_dev, 0, -EFAULT, "hole");
    mig(mem.page(Memory::kHole) - kPage, 2 * kPage, to_sys, 0, -EFAULT, "into the hole");
    // A status array the driver cannot write: nothing moves.
    const auto before = runs_of(d.fd.get(), rw, Memory::kRwPages * kPage);
    const auto out = reinterpret_cast<uintptr_t>(mem.out.get());
    for (uint64_t st :
         {kKernelAddr, reinterpret_cast<uintptr_t>(mem.alias_ro.get()), mem.page(Memory::kNone),
          mem.page(Memory::kHole), out + 8 * kPage - Memory::kRwPages + 1, kOnes})
      mig(rw, Memory::kRwPages * kPage, to_dev, st, -EFAULT, "status " + Fuzzer::hex(st));
    const auto after = runs_of(d.fd.get(), rw, Memory::kRwPages * kPage);
    fz.check(!before.empty() && same_runs(before, after), d, kMigrate,
             "pages moved although status was not writable:" + runs_text(before) + " ->" +
                 runs_text(after));
    for (Place pl : bad_places) mig(rw, kPage, to_dev, 0, -EFAULT, "place", {}, pl);
    // The status array inside the range it reports on, in VRAM by then.
    const uint64_t st_in = rw + 3 * kPage + 100;
    auto a = mig(rw, Memory::kRwPages * kPage, to_dev, st_in, 0, "status inside the range");
    fz.check(
        a.migrated + a.resident == Memory::kRwPages, d, kMigrate,
        "not every page moved: " + std::to_string(a.migrated) + "+" + std::to_string(a.resident));
    a = mig(rw, Memory::kRwPages * kPage, to_sys, st_in, 0, "status inside, back");
    // The status bytes are in page 3; everything else is as it was.
    Isolated ref(Memory::kRwPages * kPage);
    fill(ref.ptr, Memory::kRwPages, 5);
    memcpy(ref.ptr + 3 * kPage + 100, reinterpret_cast<char*>(st_in), Memory::kRwPages);
    fz.check(memcmp(ref.ptr, reinterpret_cast<char*>(rw), Memory::kRwPages * kPage) == 0, d,
             kMigrate, "data differs after a round trip with the status inside the range");
    // Mapped but odd memory: PROT_NONE, read-only, a shared file mapping.
    mig(mem.page(Memory::kNone), Memory::kNonePages * kPage, to_dev, 0, 0, "PROT_NONE");
    mig(mem.page(Memory::kNone), Memory::kNonePages * kPage, to_sys, 0, 0, "PROT_NONE back");
    mig(mem.page(Memory::kRo), Memory::kRoPages * kPage, to_dev, 0, 0, "read-only");
    mig(mem.page(Memory::kRo), Memory::kRoPages * kPage, to_sys, 0, 0, "read-only back");
    a = mig(mem.page(Memory::kFile), Memory::kFilePages * kPage, to_dev, 0, 0, "shared file");
    fz.check(a.migrated == 0, d, kMigrate, "a shared file page moved");
  } else {
    mig(rw, kPage, to_dev, 0, -ENOTTY, "without CAP_MIGRATE");
  }

  // RESIDENCY
  std::vector<hmmgpu_run> runs(64);
  auto res = [&](uint64_t addr, uint64_t len, int want, const std::string& what,
                 const std::function<void(hmmgpu_residency&)>& mut = {}, Place pl = Place::kGood) {
    hmmgpu_residency a{};
    a.addr = addr;
    a.length = len;
    a.runs = reinterpret_cast<uintptr_t>(runs.data());
    a.max_runs = static_cast<uint32_t>(runs.size());
    if (mut) mut(a);
    fz.expect(d, kResidency, HMMGPU_IOCTL_RESIDENCY, &a, sizeof(a), pl, want, "residency " + what);
    return a;
  };
  if (d.info.caps & HMMGPU_CAP_MIGRATE) {
    res(rw, kPage, -EINVAL, "flags", [](auto& a) { a.flags = 1; });
    res(rw, kPage, -EINVAL, "pad", [](auto& a) { a.pad = 1; });
    res(rw, kPage, -EINVAL, "max_runs 0", [](auto& a) { a.max_runs = 0; });
    for (unsigned i = 0; i < 4; i++)
      res(rw, kPage, -EINVAL, "reserved", [&](auto& a) { a.reserved[i] = 1; });
    res(rw + 8, kPage, -EINVAL, "misaligned");
    for (uint64_t len : {uint64_t{0}, uint64_t{1}, kPage - 1, kOnes, -rw})
      res(rw, len, -EINVAL, "length " + Fuzzer::hex(len));
    res(ts, kPage, -EINVAL, "at TASK_SIZE");
    res(kKernelAddr, kPage, -EINVAL, "kernel address");
    res(mem.page(Memory::kHole), kPage, -EFAULT, "hole");
    res(rw, kPage, -EFAULT, "runs NULL", [](auto& a) { a.runs = 0; });
    res(rw, kPage, -EFAULT, "runs kernel", [](auto& a) { a.runs = kKernelAddr; });
    res(rw, kPage, -EFAULT, "runs read-only",
        [&](auto& a) { a.runs = reinterpret_cast<uintptr_t>(mem.alias_ro.get()); });
    for (Place pl : bad_places) res(rw, kPage, -EFAULT, "place", {}, pl);
    auto a = res(rw, (Memory::kHole + 1) * kPage, -EFAULT, "into the hole");
    fz.check(a.next == mem.page(Memory::kHole), d, kResidency,
             "next " + Fuzzer::hex(a.next) + " is not the hole");
    a = res(rw, Memory::kArenaPages * kPage, -EFAULT, "the hole is not the first page");
    a = res(rw, Memory::kRwPages * kPage, 0, "max_runs 1", [](auto& a) { a.max_runs = 1; });
    fz.check(a.nruns == 1, d, kResidency, "max_runs 1 gave " + std::to_string(a.nruns));
    res(mem.page(Memory::kNone), (Memory::kNonePages + Memory::kRoPages) * kPage, 0,
        "PROT_NONE and read-only");
    res(mem.page(Memory::kFile), Memory::kFilePages * kPage, 0, "shared file");
  } else {
    res(rw, kPage, -ENOTTY, "without CAP_MIGRATE");
  }

  // ADVISE and GET_ADVICE
  auto adv = [&](uint64_t addr, uint64_t len, uint32_t advice, int want, const std::string& what,
                 const std::function<void(hmmgpu_advise&)>& mut = {}, Place pl = Place::kGood) {
    hmmgpu_advise a{};
    a.addr = addr;
    a.length = len;
    a.advice = advice;
    if (mut) mut(a);
    fz.expect(d, kAdvise, HMMGPU_IOCTL_ADVISE, &a, sizeof(a), pl, want, "advise " + what);
  };
  for (uint32_t v : {0U, 8U, 0x80000001U, ~0U})
    adv(rw, kPage, v, -EINVAL, "advice " + std::to_string(v));
  adv(rw, kPage, HMMGPU_ADVISE_READ_MOSTLY, -EOPNOTSUPP, "read-mostly");
  adv(rw, kPage, HMMGPU_ADVISE_UNSET_READ_MOSTLY, -EOPNOTSUPP, "unset read-mostly");
  adv(rw, kPage, HMMGPU_ADVISE_PREFERRED_CPU, -EINVAL, "flags", [](auto& a) { a.flags = 1; });
  for (unsigned i = 0; i < 4; i++)
    adv(rw, kPage, HMMGPU_ADVISE_PREFERRED_CPU, -EINVAL, "reserved",
        [&](auto& a) { a.reserved[i] = 1; });
  adv(rw + 1, kPage, HMMGPU_ADVISE_PREFERRED_CPU, -EINVAL, "misaligned");
  for (uint64_t len : {uint64_t{0}, kPage + 1, kOnes, -rw})
    adv(rw, len, HMMGPU_ADVISE_PREFERRED_CPU, -EINVAL, "length " + Fuzzer::hex(len));
  adv(ts, kPage, HMMGPU_ADVISE_PREFERRED_CPU, -EINVAL, "at TASK_SIZE");
  adv(kKernelAddr, kPage, HMMGPU_ADVISE_ACCESSED_BY, -EINVAL, "kernel address");
  adv(mem.page(Memory::kHole), kPage, HMMGPU_ADVISE_PREFERRED_CPU, -EFAULT, "hole");
  adv(rw, Memory::kArenaPages * kPage, HMMGPU_ADVISE_PREFERRED_CPU, -EFAULT, "across the hole");
  for (Place pl : bad_places) adv(rw, kPage, HMMGPU_ADVISE_PREFERRED_CPU, -EFAULT, "place", {}, pl);
  adv(rw, 8 * kPage, HMMGPU_ADVISE_PREFERRED_DEVICE, 0, "preferred device");
  adv(rw, 8 * kPage, HMMGPU_ADVISE_ACCESSED_BY, 0, "accessed by");
  auto get = [&](uint64_t addr, uint64_t len, int want, const std::string& what,
                 const std::function<void(hmmgpu_range_advice&)>& mut = {},
                 Place pl = Place::kGood) {
    hmmgpu_range_advice a{};
    a.addr = addr;
    a.length = len;
    if (mut) mut(a);
    fz.expect(d, kGetAdvice, HMMGPU_IOCTL_GET_ADVICE, &a, sizeof(a), pl, want,
              "get_advice " + what);
    return a;
  };
  get(rw, kPage, -EINVAL, "flags", [](auto& a) { a.flags = 0x80000000U; });
  for (unsigned i = 0; i < 4; i++)
    get(rw, kPage, -EINVAL, "reserved", [&](auto& a) { a.reserved[i] = 1; });
  get(rw + 2048, kPage, -EINVAL, "misaligned");
  for (uint64_t len : {uint64_t{0}, kPage - 1, kOnes, -rw})
    get(rw, len, -EINVAL, "length " + Fuzzer::hex(len));
  get(ts, kPage, -EINVAL, "at TASK_SIZE");
  get(mem.page(Memory::kHole), kPage, -EFAULT, "hole");
  for (Place pl : bad_places) get(rw, kPage, -EFAULT, "place", {}, pl);
  get(rw, kPage, -EFAULT, "read-only", {}, Place::kReadOnly);
  auto ga = get(rw, 8 * kPage, 0, "set");
  fz.check(ga.preferred == HMMGPU_PREFERRED_DEVICE && ga.preferred_device == d.info.index &&
               (ga.accessed_by & (uint64_t{1} << d.info.index)),
           d, kGetAdvice, "does not report the advice just set");
  adv(rw, 8 * kPage, HMMGPU_ADVISE_UNSET_PREFERRED, 0, "unset preferred");
  adv(rw, 8 * kPage, HMMGPU_ADVISE_UNSET_ACCESSED_BY, 0, "unset accessed by");

  // LAUNCH and WAIT
  auto lau = [&](const std::function<void(hmmgpu_launch&)>& mut, int want, const std::string& what,
                 Place pl = Place::kGood) {
    hmmgpu_launch a{};
    a.flags = HMMGPU_LAUNCH_WAIT;
    a.kernel = HMMGPU_KERNEL_FILL_U32;
    a.count = 1;
    a.x = rw;
    if (mut) mut(a);
    fz.expect(d, kLaunch, HMMGPU_IOCTL_LAUNCH, &a, sizeof(a), pl, want, "launch " + what);
    return a;
  };
  auto wai = [&](const std::function<void(hmmgpu_wait&)>& mut, int want, const std::string& what,
                 Place pl = Place::kGood) {
    hmmgpu_wait a{};
    a.timeout_ns = kOnes;
    if (mut) mut(a);
    fz.expect(d, kWait, HMMGPU_IOCTL_WAIT, &a, sizeof(a), pl, want, "wait " + what);
    return a;
  };
  if (!compute) {
    lau({}, -ENOTTY, "without CAP_COMPUTE");
    lau({}, -ENOTTY, "without CAP_COMPUTE, NULL", Place::kNull);
    wai({}, -ENOTTY, "without CAP_COMPUTE");
    return;
  }
  for (unsigned b = 1; b < 32; b++)
    lau([&](auto& a) { a.flags |= 1U << b; }, -EINVAL, "flags bit " + std::to_string(b));
  for (uint32_t k : {0U, 9U, 0x80000001U, ~0U})
    lau([&](auto& a) { a.kernel = k; }, -EINVAL, "kernel " + std::to_string(k));
  lau([&](auto& a) { a.stream = d.info.num_streams; }, -EINVAL, "stream num_streams");
  lau([&](auto& a) { a.stream = ~0U; }, -EINVAL, "stream ~0");
  lau([&](auto& a) { a.pad = 1; }, -EINVAL, "pad");
  lau([&](auto& a) { a.count = 0; }, -EINVAL, "count 0");
  for (uint64_t x : {ts, kKernelAddr, kOnes & ~uint64_t{7}, uint64_t{1} << 63})
    lau([&](auto& a) { a.x = x; }, -EINVAL, "x " + Fuzzer::hex(x));
  lau(
      [&](auto& a) {
        a.kernel = HMMGPU_KERNEL_COPY;
        a.y = ts;
      },
      -EINVAL, "y at TASK_SIZE");
  for (unsigned i = 0; i < 4; i++) lau([&](auto& a) { a.reserved[i] = 1; }, -EINVAL, "reserved");
  for (Place pl : bad_places) lau({}, -EFAULT, "place", pl);
  lau({}, -EFAULT, "read-only", Place::kReadOnly);
  // Arguments the device refuses: the launch ends with EINVAL.
  auto refused = [&](const std::function<void(hmmgpu_launch&)>& mut, const std::string& what) {
    auto a = lau(mut, 0, what);
    fz.check(a.error == EINVAL, d, kLaunch,
             what + ": error " + std::to_string(a.error) + ", want EINVAL");
  };
  refused([&](auto& a) { a.x = rw + 1; }, "x misaligned");
  refused([&](auto& a) { a.count = (256ULL << 20) / 4 + 1; }, "count past 256 MiB");
  refused([&](auto& a) { a.count = kOnes; }, "count ~0");
  refused([&](auto& a) { a.y = rw + kPage; }, "y for a kernel without y");
  refused(
      [&](auto& a) {
        a.kernel = HMMGPU_KERNEL_SUM_U64;
        a.scalar = 1;
      },
      "scalar for a kernel without one");
  refused([&](auto& a) { a.scalar = uint64_t{1} << 32; }, "scalar high bits");
  refused(
      [&](auto& a) {
        a.kernel = HMMGPU_KERNEL_COPY;
        a.y = rw + 8;
        a.count = 64;
      },
      "COPY overlapping");
  refused(
      [&](auto& a) {
        a.kernel = HMMGPU_KERNEL_AXPY_F32;
        a.y = rw + kPage + 2;
      },
      "y misaligned");
  // Memory the process has not mapped with the access: EFAULT and the page.
  auto faults = [&](const std::function<void(hmmgpu_launch&)>& mut, uint64_t page,
                    const std::string& what) {
    auto a = lau(mut, 0, what);
    fz.check(a.error == EFAULT && a.fault_addr == page, d, kLaunch,
             what + ": error " + std::to_string(a.error) + " at " + Fuzzer::hex(a.fault_addr));
  };
  faults([&](auto& a) { a.x = mem.page(Memory::kHole); }, mem.page(Memory::kHole), "hole");
  faults([&](auto& a) { a.x = mem.page(Memory::kRo); }, mem.page(Memory::kRo),
         "write to read-only");
  faults(
      [&](auto& a) {
        a.kernel = HMMGPU_KERNEL_CHECKSUM;
        a.x = mem.page(Memory::kNone);
      },
      mem.page(Memory::kNone), "read PROT_NONE");
  if (!is_mapped(ts - kPage))
    faults(
        [&](auto& a) {
          a.x = ts - 4;
          a.count = 2;
        },
        ts - kPage, "across TASK_SIZE");
  faults(
      [&](auto& a) {
        a.kernel = HMMGPU_KERNEL_CHECKSUM;
        a.x = mem.page(Memory::kHole) - 8;
        a.count = 16;
      },
      mem.page(Memory::kHole), "read into the hole");
  auto ok = lau(
      [&](auto& a) {
        a.kernel = HMMGPU_KERNEL_CHECKSUM;
        a.x = mem.page(Memory::kRo);
        a.count = kPage;
      },
      0, "checksum read-only");
  fz.check(ok.error == 0, d, kLaunch, "checksum of read-only memory failed");
  ok = lau(
      [&](auto& a) {
        a.x = mem.page(Memory::kFile);
        a.count = kPage / 4;
        a.scalar = 0x1234;
      },
      0, "fill shared file");
  fz.check(ok.error == 0 && *reinterpret_cast<uint32_t*>(mem.page(Memory::kFile) + 40) == 0x1234, d,
           kLaunch, "fill of a shared file mapping");
  // WAIT
  for (unsigned b = 0; b < 32; b++)
    wai([&](auto& a) { a.flags = 1U << b; }, -EINVAL, "flags bit " + std::to_string(b));
  wai([&](auto& a) { a.stream = d.info.num_streams; }, -EINVAL, "stream num_streams");
  wai([&](auto& a) { a.stream = ~0U; }, -EINVAL, "stream ~0");
  for (unsigned i = 0; i < 4; i++) wai([&](auto& a) { a.reserved[i] = 1; }, -EINVAL, "reserved");
  for (uint64_t f : {uint64_t{0}, uint64_t{1}, kOnes, uint64_t{1} << 40})
    wai([&](auto& a) { a.fence = f; }, -ENOENT, "fence " + Fuzzer::hex(f));
  for (Place pl : bad_places) wai({}, -EFAULT, "place", pl);
  // At most HMMGPU_LAUNCH_MAX_PENDING launches not waited for: none of the
  // refused ones above took a slot.
  std::vector<hmmgpu_launch> pend;
  for (int i = 0; i < HMMGPU_LAUNCH_MAX_PENDING; i++) {
    auto a = lau(
        [&](auto& a) {
          a.flags = 0;
          a.stream = i % d.info.num_streams;
          a.x = rw + 4 * i;
        },
        0, "pending " + std::to_string(i));
    pend.push_back(a);
  }
  lau([&](auto& a) { a.flags = 0; }, -EBUSY, "one too many");
  lau({}, -EBUSY, "one too many, waiting");
  // An unwritable argument fails before the launch is waited for.
  wai(
      [&](auto& a) {
        a.stream = pend[0].stream;
        a.fence = pend[0].fence;
      },
      -EFAULT, "read-only", Place::kReadOnly);
  for (size_t i = 0; i < pend.size(); i++) {
    auto w = wai(
        [&](auto& a) {
          a.stream = pend[i].stream;
          a.fence = pend[i].fence;
        },
        0, "pending");
    fz.check(w.error == 0, d, kWait, "pending launch failed: " + std::to_string(w.error));
  }
  wai(
      [&](auto& a) {
        a.stream = pend[1].stream;
        a.fence = pend[1].fence;
      },
      -ENOENT, "waited twice");
}

uint64_t seed() {
  static const uint64_t s = [] {
    const char* v = std::getenv("HMMGPU_FUZZ_SEED");
    if (v != nullptr && *v != '\0') return static_cast<uint64_t>(std::strtoull(v, nullptr, 0));
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count() &
                                 0xffffffff);
  }();
  return s;
}

long iterations() { return env_long("HMMGPU_FUZZ_ITERATIONS", 15000); }

// VRAM in use on a device, from sysfs, once it has settled (freeing is
// synchronous, but a process exiting meanwhile frees at its own pace).
uint64_t vram_used_settled(const Device& d) {
  uint64_t used = 0;
  for (int i = 0; i < 100; i++) {
    used = std::stoull(d.attr("vram_used"));
    if (used == 0) break;
    std::this_thread::sleep_for(50ms);
  }
  return used;
}

// Report a child's failures and its summary on stdout; status = failures.
int finish_child(const Stats& stats, uint64_t s) {
  printf("%s\n%s\n", stats.summary(s).c_str(), stats.timing().c_str());
  for (const auto& f : stats.failure_list()) fprintf(stderr, "FAIL: %s\n", f.c_str());
  if (stats.failures() > stats.failure_list().size())
    fprintf(stderr, "FAIL: ... %" PRIu64 " failures in all\n", stats.failures());
  fflush(stdout);
  fflush(stderr);
  return stats.failures() ? 1 : 0;
}

// Runs fn(stats) in a child process, merges the child's counts into
// all_stats() and returns its exit status (128 + signal when killed).
int run_in_child(const std::function<int(Stats&)>& fn) {
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return -1;
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    ::close(pfd[0]);
    Stats stats;
    const int st = fn(stats);
    const std::string text = stats.serialize();
    if (::write(pfd[1], text.data(), text.size()) < 0) _exit(3);
    _exit(st);
  }
  ::close(pfd[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pfd[0], buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  ::close(pfd[0]);
  all_stats().merge(text);
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// A normal workload with verified data: the device still works.
void expect_device_works(const Device& dev) {
  Fd fd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  hmmgpu_info info{};
  ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_GET_INFO, &info), 0);
  constexpr size_t kPages = 32;
  Isolated buf(kPages * kPage);
  ASSERT_NE(buf.ptr, nullptr);
  fill(buf.ptr, kPages, 77);
  std::vector<uint8_t> st;
  hmmgpu_migrate out{};
  ASSERT_EQ(migrate(fd.get(), buf.ptr, kPages * kPage, HMMGPU_MIGRATE_TO_DEVICE, &st, &out), 0);
  EXPECT_EQ(out.migrated, kPages) << dev.node;
  if (info.caps & HMMGPU_CAP_COMPUTE) {
    hmmgpu_launch l{};
    l.flags = HMMGPU_LAUNCH_WAIT;
    l.kernel = HMMGPU_KERNEL_CHECKSUM;
    l.count = kPages * kPage;
    l.x = reinterpret_cast<uintptr_t>(buf.ptr);
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
    EXPECT_EQ(l.error, 0);
    uint64_t h = uint64_t{0xcbf29ce484222325};
    Isolated ref(kPages * kPage);
    ASSERT_NE(ref.ptr, nullptr);
    fill(ref.ptr, kPages, 77);
    for (size_t i = 0; i < kPages * kPage; i++)
      h = (h ^ static_cast<uint8_t>(ref.ptr[i])) * uint64_t{0x100000001b3};
    EXPECT_EQ(l.result, h) << dev.node << ": checksum on the device";
    l = {};
    l.flags = HMMGPU_LAUNCH_WAIT;
    l.kernel = HMMGPU_KERNEL_INCREMENT_U32;
    l.count = kPages * kPage / 4;
    l.x = reinterpret_cast<uintptr_t>(buf.ptr);
    l.scalar = 1;
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
    EXPECT_EQ(l.error, 0);
    auto* w = reinterpret_cast<uint32_t*>(buf.ptr);
    auto* r = reinterpret_cast<uint32_t*>(ref.ptr);
    size_t bad = 0;
    for (size_t i = 0; i < kPages * kPage / 4; i++) bad += w[i] != r[i] + 1;
    EXPECT_EQ(bad, 0U) << dev.node << ": increment";
  } else {
    ASSERT_EQ(migrate(fd.get(), buf.ptr, kPages * kPage, HMMGPU_MIGRATE_TO_SYSTEM, &st, &out), 0);
    EXPECT_EQ(out.migrated, kPages) << dev.node;
    EXPECT_EQ(first_bad(buf.ptr, kPages, 77), -1) << dev.node;
  }
}

class FuzzIoctl : public testing::Test {
 protected:
  void SetUp() override {
    if (list_devices().empty()) GTEST_SKIP() << "no hmmgpu device";
  }
  void TearDown() override {
    if (IsSkipped()) return;
    for (const auto& d : list_devices()) {
      expect_device_works(d);
      EXPECT_EQ(vram_used_settled(d), 0U) << d.node << ": VRAM in use after every file closed";
    }
  }
};

// Prints the summary line once every test has run.
class SummaryPrinter : public testing::Environment {
 public:
  void TearDown() override { printf("%s\n", all_stats().summary(seed()).c_str()); }
};
const auto* const kSummary = testing::AddGlobalTestEnvironment(new SummaryPrinter);  // NOLINT

void expect_no_failures(const Stats& stats) {
  EXPECT_EQ(stats.failures(), 0U) << [&] {
    std::string all;
    for (const auto& f : stats.failure_list()) all += "\n  " + f;
    return all;
  }();
}

// Each field of each ioctl at its boundaries, on every device.
TEST_F(FuzzIoctl, Boundaries) {
  Memory mem;
  ASSERT_TRUE(mem.ok());
  std::vector<Dev> devs = open_devices();
  ASSERT_FALSE(devs.empty());
  Stats stats;
  Fuzzer fz(devs, mem, stats, false);
  for (auto& d : devs) boundaries(fz, mem, d);
  // Numbers the header does not define.
  static const unsigned kDirs[] = {_IOC_NONE, _IOC_READ, _IOC_WRITE, _IOC_READ | _IOC_WRITE};
  std::array<uint8_t, 512> buf{};
  for (auto& d : devs) {
    for (unsigned nr = 0; nr < 0x40; nr++)
      for (unsigned dir : kDirs)
        for (size_t size : {size_t{0}, size_t{8}, sizeof(hmmgpu_info), sizeof(hmmgpu_nop)}) {
          const unsigned long cmd = _IOC(dir, HMMGPU_IOCTL_MAGIC, nr, size);
          bool known = nr == _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS) && dir == (_IOC_READ | _IOC_WRITE);
          for (int op = 0; op < kUnknown; op++) known |= kOps[op].cmd == cmd;
          if (!known)
            fz.expect(d, kUnknown, cmd, buf.data(), 0, Place::kGood, -ENOTTY, Fuzzer::hex(cmd));
        }
    for (int op = 0; op < kUnknown; op++) {
      const unsigned long c = kOps[op].cmd;
      for (unsigned long cmd :
           {_IOC(_IOC_DIR(c), 0xc7, _IOC_NR(c), _IOC_SIZE(c)),
            _IOC(_IOC_DIR(c), HMMGPU_IOCTL_MAGIC, _IOC_NR(c) + 0x80, _IOC_SIZE(c))})
        fz.expect(d, kUnknown, cmd, buf.data(), 0, Place::kGood, -ENOTTY, Fuzzer::hex(cmd));
    }
    // A closed descriptor.
    const int fd = ::dup(d.fd.get());
    ASSERT_GE(fd, 0);
    ::close(fd);
    hmmgpu_info info{};
    EXPECT_EQ(xioctl(fd, HMMGPU_IOCTL_GET_INFO, &info), -EBADF);
  }
  all_stats().merge(stats);
  expect_no_failures(stats);
}

// Random arguments, seeded: in a child process, which exits with launches
// pending (for odd seeds) and pages in VRAM; every device must be back to 0
// VRAM after it (checked by TearDown).
TEST_F(FuzzIoctl, Random) {
  const uint64_t s = seed();
  const long n = iterations();
  printf("fuzz-ioctl: seed %" PRIu64
         " (HMMGPU_FUZZ_SEED), %ld iterations (HMMGPU_FUZZ_ITERATIONS)\n",
         s, n);
  const auto t0 = std::chrono::steady_clock::now();
  const int st = run_in_child([&](Stats& stats) {
    Memory mem;
    std::vector<Dev> devs = open_devices();
    if (!mem.ok() || devs.empty()) return 2;
    Fuzzer fz(devs, mem, stats, false);
    Gen g(s);
    for (long i = 0; i < n && stats.failures() < 100; i++)
      fz.random_op(g, devs[g.below(devs.size())]);
    if (s & 1)
      for (auto& d : devs) fz.drain(d);
    return finish_child(stats, s);
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("fuzz-ioctl: random part took %.1f s\n", secs);
  EXPECT_EQ(st, 0) << "reproduce with HMMGPU_FUZZ_SEED=" << s;
}

// A forked child fuzzes the parent's files: everything that acts on an
// address space fails with EPERM, and the parent's pages, their data and
// its pending launch stay as they were.
TEST_F(FuzzIoctl, ForkedChildOnParentsFiles) {
  Memory mem;
  ASSERT_TRUE(mem.ok());
  std::vector<Dev> devs = open_devices();
  ASSERT_FALSE(devs.empty());
  char* rw = reinterpret_cast<char*>(mem.page(Memory::kRw));
  fill(rw, Memory::kRwPages, 9);
  // Half the pages on the first device, a launch pending on each compute device.
  ASSERT_EQ(migrate(devs[0].fd.get(), rw, Memory::kRwPages / 2 * kPage, HMMGPU_MIGRATE_TO_DEVICE),
            0);
  for (auto& d : devs) {
    if (!(d.info.caps & HMMGPU_CAP_COMPUTE)) continue;
    hmmgpu_launch l{};
    l.kernel = HMMGPU_KERNEL_CHECKSUM;
    l.count = kPage;
    l.x = reinterpret_cast<uintptr_t>(rw + 40 * kPage);
    ASSERT_EQ(xioctl(d.fd.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
    d.pending.emplace_back(l.stream, l.fence);
    pollfd pfd{d.fd.get(), POLLIN, 0};  // complete (first touch done), not waited for
    ASSERT_EQ(poll(&pfd, 1, 10000), 1);
  }
  std::vector<std::vector<hmmgpu_run>> before;
  for (auto& d : devs) before.push_back(runs_of(d.fd.get(), mem.page(0), Memory::kNone * kPage));
  const int st = run_in_child([&](Stats& stats) {
    Fuzzer fz(devs, mem, stats, true);
    Gen g(seed() ^ 0xf0f0);
    // The parent's pending launches first, then anything.
    for (auto& d : devs)
      for (auto [stream, fence] : d.pending) {
        hmmgpu_wait w{};
        w.stream = stream;
        w.fence = fence;
        fz.expect(d, kWait, HMMGPU_IOCTL_WAIT, &w, sizeof(w), Place::kGood, -EPERM,
                  "parent's launch");
      }
    for (long i = 0; i < iterations() / 4; i++) fz.random_op(g, devs[g.below(devs.size())]);
    return finish_child(stats, seed());
  });
  EXPECT_EQ(st, 0);
  for (size_t i = 0; i < devs.size(); i++) {
    auto after = runs_of(devs[i].fd.get(), mem.page(0), Memory::kNone * kPage);
    EXPECT_TRUE(same_runs(before[i], after, false))
        << devs[i].dev.node << ": a page moved:" << runs_text(before[i]) << " ->"
        << runs_text(after);
  }
  for (auto& d : devs)
    for (auto [stream, fence] : d.pending) {
      hmmgpu_wait w{};
      w.stream = stream;
      w.fence = fence;
      w.timeout_ns = kOnes;
      EXPECT_EQ(xioctl(d.fd.get(), HMMGPU_IOCTL_WAIT, &w), 0)
          << d.dev.node << ": the child took it";
      EXPECT_EQ(w.error, 0);
    }
  EXPECT_EQ(first_bad(rw, Memory::kRwPages, 9), -1);
}

// Threads keep calling ioctls on a descriptor that the main thread closes
// under them: every call returns a documented errno or EBADF.
TEST_F(FuzzIoctl, CloseWhileInUse) {
  // Memory of each thread's own, made before: no descriptor is opened while
  // the one closed may be reused.
  std::array<Memory, 2> mems;
  for (const auto& m : mems) ASSERT_TRUE(m.ok());
  Stats stats;
  Gen delays(seed());
  for (const auto& dev : list_devices()) {
    for (int round = 0; round < 6; round++) {
      std::vector<Dev> devs;
      Dev d;
      d.dev = dev;
      d.fd = Fd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
      ASSERT_TRUE(d.fd.valid());
      ASSERT_EQ(xioctl(d.fd.get(), HMMGPU_IOCTL_GET_INFO, &d.info), 0);
      const int fd = d.fd.get();
      devs.push_back(std::move(d));
      std::atomic<bool> closed{false};
      std::vector<Stats> tstats(2);
      std::vector<std::thread> threads;
      for (int t = 0; t < 2; t++) {
        threads.emplace_back([&, t] {
          std::vector<Dev> mine;  // the same descriptor number, not owned
          Dev m;
          m.dev = devs[0].dev;
          m.info = devs[0].info;
          m.fd = Fd(fd);
          mine.push_back(std::move(m));
          Fuzzer fz(mine, mems[t], tstats[t], false);
          fz.set_may_be_closed(true);
          Gen g(seed() + 1000 * round + t);
          int after_close = 0;
          for (int i = 0; i < 400 && after_close < 5; i++) {
            fz.random_op(g, mine[0]);
            after_close += closed.load();
          }
          mine[0].fd.release();
        });
      }
      std::this_thread::sleep_for(std::chrono::microseconds(delays.below(20000)));
      ::close(devs[0].fd.release());
      closed = true;
      for (auto& th : threads) th.join();
      for (auto& ts : tstats) stats.merge(ts);
    }
  }
  all_stats().merge(stats);
  expect_no_failures(stats);
}

// RESIDENCY writes its runs while it holds the device context's lock; a
// runs array in VRAM, mapped by that context, must not deadlock when the
// copy faults it back (lockdep and the hung-task detector watch).
TEST_F(FuzzIoctl, ResidencyRunsInVram) {
  const auto devs = compute_devices();
  if (devs.empty()) GTEST_SKIP() << "no device with HMMGPU_CAP_COMPUTE";
  for (const auto& dev : devs) {
    Fd fd(::open(dev.dev_path().c_str(), O_RDWR | O_CLOEXEC));
    constexpr size_t kPages = 512;
    Isolated buf(kPages * kPage, 2 << 20);
    ASSERT_NE(buf.ptr, nullptr);
    fill(buf.ptr, kPages, 3);
    hmmgpu_launch l{};
    l.flags = HMMGPU_LAUNCH_WAIT;
    l.kernel = HMMGPU_KERNEL_CHECKSUM;
    l.count = kPages * kPage;
    l.x = reinterpret_cast<uintptr_t>(buf.ptr);
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_LAUNCH, &l), 0);
    ASSERT_EQ(migrate(fd.get(), buf.ptr, kPages * kPage, HMMGPU_MIGRATE_TO_DEVICE), 0);
    for (size_t i = 0; i < 200; i += 2)
      ASSERT_EQ(migrate(fd.get(), buf.ptr + i * kPage, kPage, HMMGPU_MIGRATE_TO_SYSTEM), 0);
    // The runs array: the last page of the buffer, in VRAM and mapped.
    hmmgpu_residency r{};
    r.addr = reinterpret_cast<uintptr_t>(buf.ptr);
    r.length = 200 * kPage;
    r.runs = reinterpret_cast<uintptr_t>(buf.ptr + (kPages - 1) * kPage);
    r.max_runs = kPage / sizeof(hmmgpu_run);
    ASSERT_EQ(xioctl(fd.get(), HMMGPU_IOCTL_RESIDENCY, &r), 0);
    EXPECT_EQ(r.nruns, r.max_runs);
    const auto* runs = reinterpret_cast<const hmmgpu_run*>(r.runs);
    for (uint32_t i = 0; i < r.nruns; i++) {
      EXPECT_EQ(runs[i].npages, 1U) << i;
      EXPECT_EQ(runs[i].location, i % 2 ? HMMGPU_LOC_DEVICE : HMMGPU_LOC_SYSTEM) << i;
    }
    EXPECT_EQ(first_bad(buf.ptr, kPages - 1, 3), -1);
  }
}

}  // namespace
}  // namespace hmmgpu::test
