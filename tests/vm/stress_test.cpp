// SPDX-License-Identifier: GPL-2.0
//
// Stress tests, run in the VM against the real module and emulator (the
// debug kernel: KASAN, lockdep, DEBUG_VM and kmemleak watch every run).
// Each scenario runs for HMMGPU_STRESS_SECONDS (default 60, also in CI) and
// keeps a model of every byte it owns: whatever the CPU, the devices, mm
// and the injected failures do, every buffer must end up with exactly the
// data the model says. Each scenario prints one "stress:" line with what it
// did.
//
// Scenarios: Mixed (processes x threads doing CPU writes, prefetches both
// ways, kernels with faults, munmap/mmap, mprotect, fork, MADV_DONTNEED,
// THP collapse, compaction, memory pressure), CpuFaultStorm (many threads
// faulting device pages back, on the same and on different pages),
// DeviceFaultStorm
// (every stream of every GPU first-touching memory while the CPU takes
// pages back and the VRAM overflows; a small fault buffer overflows too),
// CopyFailures (copy-engine failures injected at random while pages move),
// AllocFailures (failslab and fail_page_alloc in the driver's paths),
// UnbindUnderLoad (a GPU unbound and bound again while it works).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csetjmp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace hmmgpu::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr size_t kWords = 4096 / sizeof(uint32_t);

Clock::duration scenario_time() {
  return std::chrono::seconds(env_long("HMMGPU_STRESS_SECONDS", 60));
}

// An open device with what the stress needs to know about it.
struct Dev {
  std::string node;
  Fd fd;
  bool compute = false;
  uint32_t streams = 0;
};

// Opens every device that migrates (call after fork: a file acts on its
// opener's address space).
std::vector<Dev> open_devices() {
  std::vector<Dev> out;
  for (const auto& d : migrate_devices()) {
    Dev dev{d.node, Fd(::open(d.dev_path().c_str(), O_RDWR | O_CLOEXEC))};
    hmmgpu_info info{};
    if (!dev.fd.valid() || xioctl(dev.fd.get(), HMMGPU_IOCTL_GET_INFO, &info) != 0) continue;
    dev.compute = (info.caps & HMMGPU_CAP_COMPUTE) != 0;
    dev.streams = info.num_streams;
    out.push_back(std::move(dev));
  }
  return out;
}

// Sum of a counter over every device, read through fresh files.
uint64_t total_counter(__u64 hmmgpu_counters::*field) {
  uint64_t sum = 0;
  for (auto& d : open_devices()) {
    hmmgpu_counters c{};
    if (xioctl(d.fd.get(), HMMGPU_IOCTL_GET_COUNTERS, &c) == 0) sum += c.*field;
  }
  return sum;
}

// The sum of the /proc/vmstat counters whose names start with `prefix`
// (e.g. "pgscan_": pages reclaim scanned).
uint64_t vmstat(const std::string& prefix) {
  std::FILE* f = std::fopen("/proc/vmstat", "r");
  if (f == nullptr) return 0;
  char name[64];
  unsigned long long value = 0;
  uint64_t sum = 0;
  while (std::fscanf(f, "%63s %llu", name, &value) == 2)
    if (std::string(name).starts_with(prefix)) sum += value;
  std::fclose(f);
  return sum;
}

// The content of one page: word i is mix(seed, i) + add, or just add when
// seed is 0 (zeros, a FILL, MADV_DONTNEED).
struct PageModel {
  uint32_t seed = 0;
  uint32_t add = 0;
};

uint32_t mix(uint32_t seed, size_t i) {
  uint64_t x = (static_cast<uint64_t>(seed) << 32) ^ (i * 0x9e3779b97f4a7c15ULL);
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ULL;
  return static_cast<uint32_t>(x ^ (x >> 32));
}

uint32_t model_word(const PageModel& m, size_t i) { return (m.seed ? mix(m.seed, i) : 0) + m.add; }

// A mapping and the model of its pages, owned by one thread.
class Buffer {
 public:
  Buffer(size_t pages, bool thp) : pages_(pages), model_(pages) { map(thp); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { unmap(); }

  [[nodiscard]] char* page(size_t p) const { return base_ + p * kPage; }
  [[nodiscard]] uint32_t* words(size_t p) const { return reinterpret_cast<uint32_t*>(page(p)); }
  [[nodiscard]] size_t pages() const { return pages_; }
  [[nodiscard]] PageModel& model(size_t p) { return model_[p]; }
  [[nodiscard]] const std::vector<PageModel>& models() const { return model_; }

  // A fresh mapping in place of the old one: all zeros.
  void remap(bool thp) {
    unmap();
    map(thp);
    std::fill(model_.begin(), model_.end(), PageModel{});
  }
  void write(size_t p, uint32_t seed) {
    model_[p] = {seed, 0};
    for (size_t i = 0; i < kWords; i++) words(p)[i] = model_word(model_[p], i);
  }
  // Pages of [first, first + n) whose data differ from the model.
  [[nodiscard]] size_t mismatches(size_t first, size_t n) const {
    size_t bad = 0;
    for (size_t p = first; p < first + n; p++)
      for (size_t i = 0; i < kWords; i++)
        if (words(p)[i] != model_word(model_[p], i)) {
          bad++;
          break;
        }
    return bad;
  }
  // FNV-1a 64 of the model's bytes of [first, first + n).
  [[nodiscard]] uint64_t model_checksum(size_t first, size_t n) const {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t p = first; p < first + n; p++)
      for (size_t i = 0; i < kWords; i++) {
        uint32_t w = model_word(model_[p], i);
        for (int b = 0; b < 4; b++) h = (h ^ ((w >> (8 * b)) & 0xff)) * 0x100000001b3ULL;
      }
    return h;
  }

 private:
  void map(bool thp) {
    const size_t len = pages_ * kPage, align = thp ? (2 << 20) : kPage;
    raw_len_ = len + align;
    raw_ = static_cast<char*>(
        mmap(nullptr, raw_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (raw_ == MAP_FAILED) throw std::bad_alloc();
    base_ = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw_) + align - 1) & ~(align - 1));
    if (thp) madvise(base_, len, MADV_HUGEPAGE);
  }
  void unmap() {
    if (raw_ != nullptr && raw_ != MAP_FAILED) munmap(raw_, raw_len_);
    raw_ = nullptr;
  }
  size_t pages_;
  std::vector<PageModel> model_;
  char* raw_ = nullptr;
  size_t raw_len_ = 0;
  char* base_ = nullptr;
};

// What one worker did.
struct Tally {
  uint64_t ops = 0;
  uint64_t launches = 0;
  uint64_t migrations = 0;
  uint64_t expected_errors = 0;
  uint64_t mismatches = 0;
  std::string first_problem;
  void problem(const std::string& what) {
    mismatches++;
    if (first_problem.empty()) first_problem = what;
  }
};

// A launch that waits; returns the ioctl's result and fills *out.
int launch(const Dev& d, uint32_t kernel, void* x, uint64_t count, uint64_t scalar, uint32_t stream,
           hmmgpu_launch* out) {
  hmmgpu_launch l{};
  l.flags = HMMGPU_LAUNCH_WAIT;
  l.kernel = kernel;
  l.stream = stream % std::max(d.streams, 1U);
  l.count = count;
  l.x = reinterpret_cast<uintptr_t>(x);
  l.scalar = scalar;
  int ret = xioctl(d.fd.get(), HMMGPU_IOCTL_LAUNCH, &l);
  *out = l;
  return ret;
}

// A device that went away (ENODEV, or EBADF after a failed reopen) is
// opened again: it may be back.
bool reopened(Dev& d, int ret) {
  if (ret != -ENODEV && ret != -EBADF) return false;
  d.fd = Fd(::open(("/dev/" + d.node).c_str(), O_RDWR | O_CLOEXEC));
  return true;
}

// What a forked child saw first that was not the data as of the fork.
struct ForkSeen {
  size_t page = 0;
  size_t word = 0;
  uint32_t got = 0;
};

// The problem a child reported, with what the word should have been and
// what the parent wrote there after the fork.
std::string describe_fork_seen(const ForkSeen& seen, size_t first, size_t n, uint32_t at_fork,
                               uint32_t parent_now) {
  char text[256];
  std::snprintf(text, sizeof(text),
                "a forked child saw changed data: page %zu (of pages %zu..%zu it read) word %zu "
                "is 0x%08x, was 0x%08x at the fork, the parent wrote 0x%08x since%s",
                seen.page, first, first + n - 1, seen.word, seen.got, at_fork, parent_now,
                seen.got == parent_now ? " (the child sees the parent's write: COW broken)"
                : seen.got == 0        ? " (zeros: data lost)"
                                       : "");
  return text;
}

// A wait status in words.
std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended with wait status " + std::to_string(status);
}

// The mixed workload of one thread on its own buffers, until `until`.
// With `tolerate`, device errors (a device going away, injected
// failures) are expected and the model only follows what succeeded.
void mixed_worker(std::vector<Dev>& devs, uint32_t seed, Clock::time_point until, bool tolerate,
                  Tally* t) {
  std::mt19937 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::unique_ptr<Buffer>> bufs;
  for (int i = 0; i < 3; i++) bufs.push_back(std::make_unique<Buffer>(64 + pick(512), i == 0));
  std::vector<Dev*> compute;
  for (auto& d : devs)
    if (d.compute) compute.push_back(&d);

  while (Clock::now() < until) {
    Buffer& b = *bufs[pick(bufs.size())];
    const size_t first = pick(b.pages()), n = 1 + pick(std::min<size_t>(b.pages() - first, 96));
    t->ops++;
    switch (pick(12)) {
      case 0:
      case 1:  // CPU writes
        for (size_t p = first; p < first + n; p++) b.write(p, static_cast<uint32_t>(rng() | 1));
        break;
      case 2:  // CPU reads and checks
        if (size_t bad = b.mismatches(first, n))
          t->problem(std::to_string(bad) + " pages differ after CPU reads");
        break;
      case 3:
      case 4: {  // prefetch to a device or back
        const bool to_dev = pick(3) != 0;
        Dev& d = devs[pick(devs.size())];
        int ret = migrate(d.fd.get(), b.page(first), n * kPage,
                          to_dev ? HMMGPU_MIGRATE_TO_DEVICE : HMMGPU_MIGRATE_TO_SYSTEM);
        t->migrations++;
        if (ret != 0 && !(tolerate && (ret == -EIO || reopened(d, ret))))
          t->problem("MIGRATE: " + std::string(strerror(-ret)));
        break;
      }
      case 5:
      case 6: {  // a kernel that increments, with device faults
        if (compute.empty()) break;
        hmmgpu_launch l{};
        const uint32_t k = 1 + pick(7);
        Dev& d = *compute[pick(compute.size())];
        int ret = launch(d, HMMGPU_KERNEL_INCREMENT_U32, b.page(first), n * kWords, k,
                         static_cast<uint32_t>(rng()), &l);
        t->launches++;
        if (ret == 0 && l.error == 0) {
          for (size_t p = first; p < first + n; p++) b.model(p).add += k;
        } else if (tolerate) {
          reopened(d, ret);
          t->expected_errors++;
          // A failed launch may have run some waves: take the pages as they are.
          for (size_t p = first; p < first + n; p++) b.write(p, static_cast<uint32_t>(rng() | 1));
        } else {
          t->problem("INCREMENT: ret " + std::to_string(ret) + " error " + std::to_string(l.error));
        }
        break;
      }
      case 7: {  // a checksum kernel against the model
        if (compute.empty()) break;
        hmmgpu_launch l{};
        Dev& d = *compute[pick(compute.size())];
        int ret = launch(d, HMMGPU_KERNEL_CHECKSUM, b.page(first), n * kPage, 0,
                         static_cast<uint32_t>(rng()), &l);
        t->launches++;
        if (ret == 0 && l.error == 0) {
          if (l.result != b.model_checksum(first, n)) t->problem("CHECKSUM differs from the model");
        } else if (tolerate) {
          reopened(d, ret);
          t->expected_errors++;
        } else {
          t->problem("CHECKSUM: ret " + std::to_string(ret) + " error " + std::to_string(l.error));
        }
        break;
      }
      case 8:  // MADV_DONTNEED: zeros
        if (madvise(b.page(first), n * kPage, MADV_DONTNEED) != 0) t->problem("MADV_DONTNEED");
        for (size_t p = first; p < first + n; p++) b.model(p) = {};
        break;
      case 9:  // read-only for a while: CPU reads still match
        mprotect(b.page(first), n * kPage, PROT_READ);
        if (size_t bad = b.mismatches(first, n))
          t->problem(std::to_string(bad) + " RO pages differ");
        mprotect(b.page(first), n * kPage, PROT_READ | PROT_WRITE);
        break;
      case 10: {  // fork: the child sees the data as of the fork (COW)
        const char* base = b.page(0);
        const std::vector<PageModel> snapshot = b.models();
        int seen_pipe[2];
        if (pipe2(seen_pipe, O_CLOEXEC) != 0) {
          t->problem("pipe2: " + std::string(strerror(errno)));
          break;
        }
        pid_t pid = fork();
        if (pid == 0) {
          ::close(seen_pipe[0]);
          for (size_t p = first; p < first + n; p++)
            for (size_t i = 0; i < kWords; i++) {
              const uint32_t got = reinterpret_cast<const uint32_t*>(base + p * kPage)[i];
              if (got != model_word(snapshot[p], i)) {
                const ForkSeen seen{p, i, got};
                _exit(::write(seen_pipe[1], &seen, sizeof(seen)) == sizeof(seen) ? 1 : 2);
              }
            }
          _exit(0);
        }
        ::close(seen_pipe[1]);
        for (size_t p = first; p < first + n; p++) b.write(p, static_cast<uint32_t>(rng() | 1));
        int status = 0;
        waitpid(pid, &status, 0);
        ForkSeen seen{};
        const bool told = ::read(seen_pipe[0], &seen, sizeof(seen)) == sizeof(seen);
        ::close(seen_pipe[0]);
        if (told && seen.page < snapshot.size() && seen.word < kWords) {
          t->problem(describe_fork_seen(seen, first, n, model_word(snapshot[seen.page], seen.word),
                                        model_word(b.model(seen.page), seen.word)));
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          t->problem("a forked child " + describe_status(status));
        }
        break;
      }
      case 11:  // a new mapping, or a THP collapse
        if (pick(2) != 0) {
          b.remap(pick(2) != 0);
        } else {
          madvise(b.page(0), b.pages() * kPage, 25 /* MADV_COLLAPSE */);
        }
        break;
    }
  }
  for (auto& b : bufs)
    if (size_t bad = b->mismatches(0, b->pages()))
      t->problem(std::to_string(bad) + " pages differ at the end");
}

// Runs `fn(worker index)` in `procs` forked processes of `threads` threads;
// each process opens its own devices. Returns the summed tallies (passed
// back through a shared mapping).
template <typename Fn>
Tally run_processes(int procs, int threads, Fn fn) {
  const size_t slots = static_cast<size_t>(procs * threads);
  Mapping shared(sizeof(Tally) * slots, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
  struct Slot {
    uint64_t ops, launches, migrations, expected_errors, mismatches;
    char problem[200];
  };
  auto* out = reinterpret_cast<Slot*>(shared.get());
  std::vector<pid_t> pids;
  for (int p = 0; p < procs; p++) {
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<Dev> devs = open_devices();
      std::vector<std::thread> ts;
      for (int i = 0; i < threads; i++)
        ts.emplace_back([&, i] {
          Tally t;
          const int w = p * threads + i;
          fn(devs, w, &t);
          Slot& s = out[w];
          s = {t.ops, t.launches, t.migrations, t.expected_errors, t.mismatches, {}};
          std::snprintf(s.problem, sizeof(s.problem), "%s", t.first_problem.c_str());
        });
      for (auto& th : ts) th.join();
      _exit(0);
    }
    pids.push_back(pid);
  }
  Tally sum;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      sum.problem("a worker process " + describe_status(status));
  }
  for (size_t w = 0; w < slots; w++) {
    sum.ops += out[w].ops;
    sum.launches += out[w].launches;
    sum.migrations += out[w].migrations;
    sum.expected_errors += out[w].expected_errors;
    sum.mismatches += out[w].mismatches;
    if (sum.first_problem.empty() && out[w].problem[0] != '\0') sum.first_problem = out[w].problem;
  }
  return sum;
}

// VRAM in use on every device comes back to zero once the workers exited
// (pages are freed asynchronously after exit: allow a moment), and no file
// holds the module.
void expect_all_released() {
  for (int i = 0; i < 100; i++) {
    bool zero = true;
    for (const auto& d : list_devices()) zero &= d.attr("vram_used") == "0";
    if (zero) break;
    std::this_thread::sleep_for(50ms);
  }
  for (const auto& d : list_devices()) EXPECT_EQ(d.attr("vram_used"), "0") << d.node;
  EXPECT_EQ(read_file("/sys/module/hmmgpu/refcnt").value_or("?"), "0");
}

void report(const char* scenario, const Tally& t, const std::string& extra) {
  std::printf(
      "stress: %s: %llu ops, %llu launches, %llu migrations, %llu expected errors, %s, "
      "%llu mismatches\n",
      scenario, static_cast<unsigned long long>(t.ops), static_cast<unsigned long long>(t.launches),
      static_cast<unsigned long long>(t.migrations),
      static_cast<unsigned long long>(t.expected_errors), extra.c_str(),
      static_cast<unsigned long long>(t.mismatches));
  EXPECT_EQ(t.mismatches, 0u) << t.first_problem;
}

// A thread beside the workers: runs `body` until the object goes, with a
// flag that tells `body` to return.
class Background {
 public:
  explicit Background(std::function<void(const std::atomic<bool>& stop)> body)
      : thread_([this, body = std::move(body)] { body(stop_); }) {}
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Compaction now and then: mm migrates the system pages devices map.
class Compactor {
 private:
  Background thread_{[](const std::atomic<bool>& stop) {
    while (!stop) {
      write_file("/proc/sys/vm/compact_memory", "1");
      std::this_thread::sleep_for(300ms);
    }
  }};
};

// Keeps this process, and the processes it forks from now on, out of the
// OOM killer's reach (oom_score_adj -1000) while it lives: the memory the
// scenario hogs must not cost it a worker.
class ProtectFromOom {
 public:
  ProtectFromOom() : old_(read_file("/proc/self/oom_score_adj").value_or("0\n")) {
    EXPECT_TRUE(write_file("/proc/self/oom_score_adj", "-1000"));
  }
  ProtectFromOom(const ProtectFromOom&) = delete;
  ProtectFromOom& operator=(const ProtectFromOom&) = delete;
  ~ProtectFromOom() { write_file("/proc/self/oom_score_adj", old_); }

 private:
  std::string old_;
};

// Memory pressure in the guest: a child process that, over and over,
// populates the memory the kernel says is available down to 32 MiB, holds
// it a moment and lets it go, so that compaction and the allocation slow
// paths run beside the workers. Without swap, going further means the OOM
// killer: with HMMGPU_STRESS_OOM=1 the hog goes down to 16 MiB, so that
// reclaim runs too and the OOM killer takes the hog. It volunteers
// (oom_score_adj 1000) and is started again at once when it dies; the
// test's own processes are out of the OOM killer's reach (ProtectFromOom).
class MemoryPressure {
 public:
  [[nodiscard]] uint64_t rounds() const { return std::atomic_ref<uint64_t>(*rounds_).load(); }

 private:
  static size_t available() {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    if (f == nullptr) return 0;
    char line[128];
    size_t kib = 0;
    while (std::fgets(line, sizeof(line), f) != nullptr)
      if (std::sscanf(line, "MemAvailable: %zu kB", &kib) == 1) break;
    std::fclose(f);
    return kib * 1024;
  }
  void hog() {
    write_file("/proc/self/oom_score_adj", "1000");
    // HMMGPU_STRESS_OOM=1: on to the OOM killer, which takes the hog (see
    // above); by default the hog stops while 32 MiB are still available.
    const size_t floor = env_long("HMMGPU_STRESS_OOM", 0) != 0 ? 0 : size_t{32} << 20;
    constexpr size_t kMargin = size_t{16} << 20, kStep = size_t{64} << 20;
    for (;;) {
      const size_t avail = available();
      if (avail > 2 * kMargin) {
        const size_t len = (avail - kMargin) & ~((size_t{2} << 20) - 1);
        void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
          // Huge pages where compaction finds them: a page fault per 2 MiB
          // keeps a round short under TCG.
          madvise(p, len, MADV_HUGEPAGE);
          // A step at a time, stopping at the floor: an OOM kill of the hog
          // frees its memory slowly (seconds under KASAN), and a second OOM
          // meanwhile can take the shell that runs the test (the test's own
          // processes are out of reach).
          for (size_t off = 0; off < len && available() > floor; off += kStep)
            madvise(static_cast<char*>(p) + off, std::min(kStep, len - off),
                    23 /* MADV_POPULATE_WRITE; ENOMEM under pressure is fine */);
          std::this_thread::sleep_for(200ms);
          munmap(p, len);
          std::atomic_ref<uint64_t>(*rounds_).fetch_add(1);
        }
      }
      std::this_thread::sleep_for(300ms);
    }
  }
  void run(const std::atomic<bool>& stop) {
    while (!stop) {
      std::fflush(nullptr);
      const pid_t pid = fork();
      if (pid == 0) {
        hog();
        _exit(0);
      }
      if (pid < 0) return;
      // Polled often: a hog the OOM killer took is replaced at once.
      while (!stop && waitpid(pid, nullptr, WNOHANG) == 0) std::this_thread::sleep_for(5ms);
      if (stop) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
  }
  // Counted by the child, read here.
  Mapping shared_{sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS};
  uint64_t* rounds_ = reinterpret_cast<uint64_t*>(shared_.get());
  Background thread_{[this](const std::atomic<bool>& stop) { run(stop); }};  // last: goes first
};

// Every device's debugfs state and counters, to stderr: what the stuck
// launches wait for (fences, fault buffer, stalled queues).
void dump_device_state() {
  namespace fs = std::filesystem;
  std::error_code ec;
  // What the fault service does meanwhile, for a second.
  const std::string events = "/sys/kernel/tracing/events/hmmgpu/";
  const char* fault_events[] = {"hmmgpu_device_fault", "hmmgpu_fault_service", "hmmgpu_device_map"};
  write_file("/sys/kernel/tracing/trace", "");
  for (const char* e : fault_events) write_file(events + e + "/enable", "1");
  std::this_thread::sleep_for(1s);
  for (const char* e : fault_events) write_file(events + e + "/enable", "0");
  if (std::FILE* f = std::fopen("/sys/kernel/tracing/trace", "r")) {
    std::fprintf(stderr, "stress: one second of the fault service's tracepoints:\n");
    char line[512];
    for (int n = 0; n < 400 && std::fgets(line, sizeof(line), f) != nullptr; n++)
      std::fputs(line, stderr);
    std::fclose(f);
  }
  for (const auto& dir : fs::directory_iterator("/sys/kernel/debug/hmmgpu", ec)) {
    for (const char* name : {"state", "counters"}) {
      std::FILE* f = std::fopen((dir.path() / name).c_str(), "r");
      if (f == nullptr) continue;
      std::fprintf(stderr, "stress: %s/%s:\n", dir.path().c_str(), name);
      char line[512];
      while (std::fgets(line, sizeof(line), f) != nullptr) std::fputs(line, stderr);
      std::fclose(f);
    }
  }
}

// A scenario that runs far past its time is stuck: the devices' state goes
// to stderr, the locks held and the blocked tasks' and the CPUs' stacks to
// the kernel log (SysRq d, w, l), and the test process aborts, so the run
// fails with the evidence instead of at the runner's timeout.
class Watchdog {
 public:
  explicit Watchdog(Clock::duration limit)
      : thread_([this, deadline = Clock::now() + limit] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_until(lock, deadline, [this] { return done_; })) {
            dump_device_state();
            for (const char* key : {"d", "w", "l"})  // held locks, blocked tasks, CPUs
              write_file("/proc/sysrq-trigger", key);
            std::fprintf(stderr, "stress: stuck, blocked tasks are in the kernel log\n");
            std::abort();
          }
        }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

class Stress : public testing::Test {
 protected:
  void SetUp() override {
    if (migrate_devices().empty()) GTEST_SKIP() << "no device migrates";
    until_ = Clock::now() + scenario_time();
    watchdog_.emplace(4 * scenario_time() + 60s);
  }
  void TearDown() override {
    expect_all_released();
    watchdog_.reset();
  }
  Clock::time_point until_;
  std::optional<Watchdog> watchdog_;
};

// Two processes of three threads each, every operation at random.
TEST_F(Stress, Mixed) {
  const uint64_t faults0 = total_counter(&hmmgpu_counters::device_faults);
  const uint64_t cpu0 = total_counter(&hmmgpu_counters::cpu_faults);
  const uint64_t scanned0 = vmstat("pgscan_");
  const uint64_t oom0 = vmstat("oom_kill");
  ProtectFromOom protect;
  Compactor compactor;
  MemoryPressure pressure;
  Tally t = run_processes(2, 3, [&](std::vector<Dev>& devs, int w, Tally* tally) {
    mixed_worker(devs, 1000 + w, until_, false, tally);
  });
  const uint64_t scanned = vmstat("pgscan_") - scanned0;
  report("Mixed", t,
         std::to_string(total_counter(&hmmgpu_counters::device_faults) - faults0) +
             " device faults, " +
             std::to_string(total_counter(&hmmgpu_counters::cpu_faults) - cpu0) + " CPU faults, " +
             std::to_string(pressure.rounds()) + " rounds of memory pressure (" +
             std::to_string(scanned) + " pages scanned by reclaim, " +
             std::to_string(vmstat("oom_kill") - oom0) + " OOM kills)");
}

// Sixteen threads fault the pages of one device-resident buffer back at
// once, half of them on the same pages in the same order, half on their
// own; each writes its own word of every page it touches.
TEST_F(Stress, CpuFaultStorm) {
  const uint64_t cpu0 = total_counter(&hmmgpu_counters::cpu_faults);
  Tally t = run_processes(1, 1, [&](std::vector<Dev>& devs, int, Tally* tally) {
    constexpr int kThreads = 16;
    const size_t pages = 1024;
    Buffer b(pages, false);
    for (size_t p = 0; p < pages; p++) b.write(p, static_cast<uint32_t>(p + 1));
    uint32_t round = 0;
    while (Clock::now() < until_) {
      round++;
      Dev& d = devs[round % devs.size()];
      if (migrate(d.fd.get(), b.page(0), pages * kPage, HMMGPU_MIGRATE_TO_DEVICE) != 0)
        tally->problem("MIGRATE failed");
      tally->migrations++;
      std::vector<std::thread> ts;
      for (int i = 0; i < kThreads; i++)
        ts.emplace_back([&, i] {
          for (size_t k = 0; k < pages; k++) {
            const size_t p = i % 2 == 0 ? k : (k * 7 + static_cast<size_t>(i) * 64) % pages;
            b.words(p)[i] = round;  // word i belongs to thread i
          }
        });
      for (auto& th : ts) th.join();
      for (size_t p = 0; p < pages; p++)
        for (int i = 0; i < kThreads; i++) {
          // What the words of the threads should be now; the model keeps the rest.
          if (b.words(p)[i] != round) tally->problem("a thread's write was lost");
          b.words(p)[i] = model_word(b.model(p), static_cast<size_t>(i));
        }
      tally->ops += kThreads * pages;
    }
    if (size_t bad = b.mismatches(0, pages)) tally->problem(std::to_string(bad) + " pages differ");
  });
  report("CpuFaultStorm", t,
         std::to_string(total_counter(&hmmgpu_counters::cpu_faults) - cpu0) + " CPU faults");
}

// Every stream of every GPU first-touches and increments memory of its own
// while a CPU thread per process reads pages back (eviction races the
// faults): working sets of twice the VRAM, and, when emu_fault_entries is
// small, fault buffers that overflow.
TEST_F(Stress, DeviceFaultStorm) {
  const uint64_t faults0 = total_counter(&hmmgpu_counters::device_faults);
  const uint64_t dropped0 = total_counter(&hmmgpu_counters::fault_dropped);
  const uint64_t evicted0 = total_counter(&hmmgpu_counters::evicted_pages);
  const long entries =
      std::stol(read_file("/sys/module/hmmgpu/parameters/emu_fault_entries").value_or("1024"));
  uint64_t vram = 0;
  for (const auto& d : devices_with_backend("emu"))
    vram = std::max<uint64_t>(vram, std::stoull(d.attr("vram_total")));
  if (vram == 0) GTEST_SKIP() << "no emulated GPU";
  Tally t = run_processes(2, 1, [&](std::vector<Dev>& devs, int w, Tally* tally) {
    std::vector<Dev*> compute;
    for (auto& d : devs)
      if (d.compute) compute.push_back(&d);
    const size_t per_stream = vram / kPage / 4;  // 2 processes x 2 GPUs x streams: > 2x VRAM
    struct Job {
      Dev* dev;
      uint32_t stream;
      std::unique_ptr<Buffer> buf;
    };
    std::vector<Job> jobs;
    for (Dev* d : compute)
      for (uint32_t s = 0; s < d->streams; s++)
        jobs.push_back({d, s, std::make_unique<Buffer>(per_stream, false)});
    std::atomic<bool> stop{false};
    std::thread reader([&] {  // CPU faults on whatever the devices hold
      std::mt19937 rng(static_cast<uint32_t>(w));
      while (!stop) {
        Job& j = jobs[rng() % jobs.size()];
        volatile uint32_t x = j.buf->words(rng() % j.buf->pages())[0];
        (void)x;
      }
    });
    std::vector<std::thread> ts;
    for (auto& j : jobs)
      ts.emplace_back([&, jp = &j] {
        while (Clock::now() < until_) {
          hmmgpu_launch l{};
          int ret = launch(*jp->dev, HMMGPU_KERNEL_INCREMENT_U32, jp->buf->page(0),
                           jp->buf->pages() * kWords, 1, jp->stream, &l);
          if (ret != 0 || l.error != 0) {
            tally->problem("INCREMENT failed: " + std::to_string(ret) + "/" +
                           std::to_string(l.error));
            break;
          }
          for (size_t p = 0; p < jp->buf->pages(); p++) jp->buf->model(p).add += 1;
          tally->launches++;
        }
      });
    for (auto& th : ts) th.join();
    stop = true;
    reader.join();
    for (auto& j : jobs)
      if (size_t bad = j.buf->mismatches(0, j.buf->pages()))
        tally->problem(std::to_string(bad) + " pages differ");
  });
  const uint64_t dropped = total_counter(&hmmgpu_counters::fault_dropped) - dropped0;
  report("DeviceFaultStorm", t,
         std::to_string(total_counter(&hmmgpu_counters::device_faults) - faults0) +
             " device faults, " + std::to_string(dropped) + " dropped by full fault buffers, " +
             std::to_string(total_counter(&hmmgpu_counters::evicted_pages) - evicted0) +
             " pages evicted");
  if (entries <= 16) {
    EXPECT_GT(dropped, 0u) << "fault buffers of " << entries << " entries never overflowed";
  }
}

// Where a CPU access that raised SIGBUS goes on.
sigjmp_buf bus_jump;
void on_bus(int /*sig*/) { siglongjmp(bus_jump, 1); }

// Reads *p into *out; false when that raised SIGBUS (on_bus installed).
[[gnu::noinline]] bool read_or_bus(const uint32_t* p, uint32_t* out) {
  if (sigsetjmp(bus_jump, 1) != 0) return false;
  *out = *static_cast<const volatile uint32_t*>(p);
  return true;
}

// An int in a shared anonymous mapping, set by the parent and seen by the
// workers it forked.
class SharedFlag {
 public:
  SharedFlag() : map_(kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS) {}
  void set() { std::atomic_ref<int>(*word()).store(1); }
  [[nodiscard]] bool is_set() const { return std::atomic_ref<int>(*word()).load() != 0; }
  void wait() const {
    while (!is_set()) std::this_thread::sleep_for(10ms);
  }

 private:
  [[nodiscard]] int* word() const { return reinterpret_cast<int*>(map_.get()); }
  Mapping map_;
};

// Copies of an emulated GPU fail at random while pages move both ways and
// the CPU faults them back: MIGRATE reports the failed pages, a CPU access
// whose page cannot come back gets SIGBUS, and once the failures stop every
// page reads back its data: nothing is lost.
TEST_F(Stress, CopyFailures) {
  if (std::getenv("HMMGPU_EMU_CONTROL") == nullptr) GTEST_SKIP() << "no emulator control file";
  auto gpu = emu_device(0);
  if (!gpu) GTEST_SKIP() << "no emulated GPU 0";
  const uint64_t errors0 = total_counter(&hmmgpu_counters::copy_errors);
  SharedFlag cleared;
  uint64_t injections = 0;
  std::thread injector([&] {
    std::mt19937 rng(7);
    while (Clock::now() < until_) {
      if (control("fail-copies 0 " + std::to_string(1 + rng() % 8))) injections++;
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 40));
    }
    EXPECT_TRUE(control("clear 0"));
    cleared.set();
  });
  Tally t = run_processes(2, 1, [&](std::vector<Dev>&, int w, Tally* tally) {
    Fd fd(::open(gpu->dev_path().c_str(), O_RDWR | O_CLOEXEC));
    std::mt19937 rng(static_cast<uint32_t>(w));
    const size_t pages = 256;
    Buffer b(pages, false);
    for (size_t p = 0; p < pages; p++) b.write(p, static_cast<uint32_t>(w * 1000 + p + 1));
    struct sigaction sa {};
    sa.sa_handler = on_bus;
    sigaction(SIGBUS, &sa, nullptr);
    while (Clock::now() < until_) {
      std::vector<uint8_t> st;
      int ret = migrate(fd.get(), b.page(0), pages * kPage,
                        rng() % 2 ? HMMGPU_MIGRATE_TO_DEVICE : HMMGPU_MIGRATE_TO_SYSTEM, &st);
      tally->migrations++;
      if (ret != 0 && ret != -EIO) tally->problem("MIGRATE: " + std::string(strerror(-ret)));
      if (ret == -EIO || count(st, HMMGPU_PAGE_COPY_FAILED) > 0) tally->expected_errors++;
      for (int k = 0; k < 32; k++) {  // CPU reads: SIGBUS or the right data
        const size_t p = rng() % pages;
        uint32_t word = 0;
        if (!read_or_bus(&b.words(p)[5], &word))
          tally->expected_errors++;
        else if (word != model_word(b.model(p), 5))
          tally->problem("a CPU read got wrong data");
        tally->ops++;
      }
    }
    cleared.wait();  // then every page must read back
    if (size_t bad = b.mismatches(0, pages)) tally->problem(std::to_string(bad) + " pages lost");
  });
  injector.join();
  report("CopyFailures", t,
         std::to_string(injections) + " injections, " +
             std::to_string(total_counter(&hmmgpu_counters::copy_errors) - errors0) +
             " failed page copies");
}

// Sets a debugfs fault-injection attribute, keeping the old value.
class InjectSetting {
 public:
  InjectSetting(std::string path, const std::string& value)
      : path_(std::move(path)), old_(read_file(path_)) {
    ok_ = old_.has_value() && write_file(path_, value);
  }
  InjectSetting(const InjectSetting&) = delete;
  InjectSetting& operator=(const InjectSetting&) = delete;
  ~InjectSetting() {
    if (old_) write_file(path_, *old_);
  }
  [[nodiscard]] bool ok() const { return ok_; }

 private:
  std::string path_;
  std::optional<std::string> old_;
  bool ok_ = false;
};

// Makes the calling thread's allocations fail (failslab, fail_page_alloc
// with task-filter) while it is set; the file stays open, so turning it
// off allocates nothing.
class MakeItFail {
 public:
  MakeItFail()
      : fd_(::open(("/proc/self/task/" + std::to_string(gettid()) + "/make-it-fail").c_str(),
                   O_WRONLY | O_CLOEXEC)) {}
  [[nodiscard]] bool valid() const { return fd_.valid(); }
  void set(bool on) const { (void)!pwrite(fd_.get(), on ? "1" : "0", 1, 0); }

 private:
  Fd fd_;
};

// Slab and page allocations of the driver's ioctl paths fail at random
// (failslab and fail_page_alloc, for the workers' threads only, during
// their ioctls): every call returns its documented errno or moves fewer
// pages, never anything else, and once allocations work again every page
// has its data.
TEST_F(Stress, AllocFailures) {
  const std::string fpa = "/sys/kernel/debug/fail_page_alloc/", fs = "/sys/kernel/debug/failslab/";
  if (!read_file(fpa + "probability") || !read_file(fs + "probability"))
    GTEST_SKIP() << "no fail_page_alloc or failslab";
  std::vector<std::unique_ptr<InjectSetting>> settings;
  for (const std::string& dir : {fpa, fs})
    for (const auto& [name, value] :
         std::vector<std::pair<std::string, std::string>>{{"task-filter", "Y"},
                                                          {"ignore-gfp-wait", "N"},
                                                          {"verbose", "0"},
                                                          {"space", "0"},
                                                          {"interval", "1"},
                                                          {"times", "-1"},
                                                          {"probability", "5"}}) {
      if (dir == fs && name == "ignore-gfp-highmem") continue;
      settings.push_back(std::make_unique<InjectSetting>(dir + name, value));
      ASSERT_TRUE(settings.back()->ok()) << dir << name;
    }
  settings.push_back(std::make_unique<InjectSetting>(fpa + "ignore-gfp-highmem", "N"));
  Tally t = run_processes(2, 2, [&](std::vector<Dev>& devs, int w, Tally* tally) {
    MakeItFail fail;
    if (!fail.valid()) {
      tally->problem("no make-it-fail");
      return;
    }
    std::mt19937 rng(static_cast<uint32_t>(w));
    Buffer b(128, false);
    for (size_t p = 0; p < b.pages(); p++) b.write(p, static_cast<uint32_t>(w * 1000 + p + 1));
    while (Clock::now() < until_) {
      Dev& d = devs[rng() % devs.size()];
      const size_t first = rng() % b.pages(), n = 1 + rng() % (b.pages() - first);
      std::vector<uint8_t> st(n);
      hmmgpu_launch l{};
      int ret;
      fail.set(true);
      switch (rng() % 3) {
        case 0:
        case 1:
          ret = migrate(d.fd.get(), b.page(first), n * kPage,
                        rng() % 2 ? HMMGPU_MIGRATE_TO_DEVICE : HMMGPU_MIGRATE_TO_SYSTEM, &st);
          fail.set(false);
          tally->migrations++;
          if (ret == -ENOMEM || ret == -EIO ||
              count(st, HMMGPU_PAGE_MIGRATED) + count(st, HMMGPU_PAGE_RESIDENT) < n)
            tally->expected_errors++;
          else if (ret != 0)
            tally->problem("MIGRATE: " + std::string(strerror(-ret)));
          break;
        default:
          if (!d.compute) {
            fail.set(false);
            break;
          }
          ret = launch(d, HMMGPU_KERNEL_INCREMENT_U32, b.page(first), n * kWords, 3,
                       static_cast<uint32_t>(rng()), &l);
          fail.set(false);
          tally->launches++;
          if (ret == 0 && l.error == 0) {
            for (size_t p = first; p < first + n; p++) b.model(p).add += 3;
          } else if (ret == -ENOMEM) {
            tally->expected_errors++;
          } else {
            tally->problem("INCREMENT: ret " + std::to_string(ret) + " error " +
                           std::to_string(l.error));
          }
          break;
      }
      tally->ops++;
      if (size_t bad = b.mismatches(first, n))
        tally->problem(std::to_string(bad) + " pages differ");
    }
  });
  settings.clear();
  report("AllocFailures", t, "failslab and fail_page_alloc at 5%");
}

// A GPU is unbound from its driver and bound again, three times, while
// processes migrate to it and run kernels on it: their calls fail with
// ENODEV (or EIO) in between, they reopen it, and every byte survives
// (unbinding brings the device's pages back to system memory first).
TEST_F(Stress, UnbindUnderLoad) {
  auto gpu = emu_device(1);
  if (!gpu) GTEST_SKIP() << "no emulated GPU 1";
  const std::string parent = gpu->parent(), name = parent.substr(parent.rfind('/') + 1);
  const std::string driver = std::filesystem::canonical(parent + "/driver").string();
  std::thread unbinder([&] {
    for (int i = 0; i < 3; i++) {
      std::this_thread::sleep_until(Clock::now() + scenario_time() / 4);
      EXPECT_TRUE(write_file(driver + "/unbind", name));
      std::this_thread::sleep_for(200ms);
      EXPECT_TRUE(write_file(driver + "/bind", name));
    }
  });
  Tally t = run_processes(2, 2, [&](std::vector<Dev>& devs, int w, Tally* tally) {
    mixed_worker(devs, 2000 + w, until_, true, tally);
  });
  unbinder.join();
  report("UnbindUnderLoad", t, "3 unbinds");
}

}  // namespace
}  // namespace hmmgpu::test
