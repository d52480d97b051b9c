// SPDX-License-Identifier: GPL-2.0
//
// hmmgpu-bench: the migration and compute measurements of `make bench`, run where the devices are
// (in the VM, or on a machine whose kernel has CONFIG_DEVICE_PRIVATE with hmmgpu.ko's sysram
// device). bench/run starts it and turns its Google Benchmark JSON into the table and chart.
//
//   hmmgpu-bench [--groups=prefetch,floor,faults,compute,oversub] [--sizes=4,16,64,256]
//                [--fault-mib=64] [--compute-mib=64] [--oversub=0.5,1,2,4] [--reps=5]
//                (repetitions after one warm-up run)
//                [Google Benchmark flags, e.g. --benchmark_out=FILE --benchmark_filter=RE]
//
// Subjects: "emu" (the first emulated GPU), "sysram" (the first sysram device), "test_hmm"
// (/dev/hmm_dmirror0, the kernel's reference driver), and variants of emu: "emu-floor" (its
// copy engine told to move no bytes, emu/SPEC.md 8.2) and "emu-fa-off" (fault_around_pages=1).
// Measurements, each `name/subject/.../size`:
//   prefetch/S/<MiB>M            fill, MIGRATE to the device (to_device_s), MIGRATE back
//                                (to_system_s), check the data. test_hmm's MIGRATE_TO_DEV also
//                                copies the data out for verification: that copy is timed alone
//                                with HMM_DMIRROR_READ (verify_copy_s, the least of three reads,
//                                at most half of the migration) and taken off to_device_s.
//   fault_back/S/seq|random/<MiB>M  fill, migrate, then one read per page in address or random
//                                order (fault_back_s), the CPU faults counted (faults,
//                                us_per_fault), check the data.
//   round_trip/S/nop             64 NOPs one after the other (us_per_nop): the device's round trip
//                                that every copy, a CPU fault's too, waits for.
//   first_touch/K/<MiB>M         CPU fill, then kernel K on memory the device has never seen: its
//                                faults migrate it (kernel_s); K is stream (INCREMENT_U32) or
//                                reduction (SUM_U64).
//   prefetch_run/K/<MiB>M        CPU fill, MIGRATE (migrate_s), then K (kernel_s); K again on the
//                                resident data (resident_kernel_s, not in the reported time).
//   oversub/stream/<F>x          INCREMENT_U32 over a CPU-filled buffer of F times the VRAM.
// Every run checks its result (data after every round trip, kernel results and the memory they
// wrote); a copy-floor run, whose data is garbage by design, checks where every page is instead.
// Any failure fails the measurement and makes the program exit 1.

#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "devices.h"
#include "harness.h"

namespace hmmgpu::bench {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;

// The measurements' defaults (harness.h has the options).
Options parse(int argc, char** argv) {
  Options defaults;
  defaults.groups = {"prefetch", "floor", "faults", "compute", "oversub"};
  defaults.oversub = {0.5, 1, 2, 4};
  return parse_options(argc, argv, std::move(defaults), "guest_bench.cpp");
}

// Whole pages of at least one, from MiB.
uint64_t bytes_of(double mib) {
  const auto bytes = static_cast<uint64_t>(mib * static_cast<double>(kMiB));
  return std::max<uint64_t>(kPage, bytes / kPage * kPage);
}

std::string size_name(uint64_t bytes) {
  std::ostringstream s;
  s << static_cast<double>(bytes) / static_cast<double>(kMiB) << "M";
  return s.str();
}

// Buffers by size, reused from run to run (a run leaves its buffer in system memory). A run that
// fails drops its buffer, since its pages may be anywhere.
class Pool {
 public:
  class Lease {
   public:
    Lease(Pool& pool, uint64_t bytes) : pool_(pool), bytes_(bytes) {
      auto it = pool_.free_.find(bytes);
      if (it != pool_.free_.end()) {
        buffer_ = std::move(it->second);
        pool_.free_.erase(it);
      } else {
        buffer_ = std::make_unique<Buffer>(bytes);
      }
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease(Lease&&) = delete;
    Lease& operator=(Lease&&) = delete;
    ~Lease() = default;
    [[nodiscard]] const Buffer& operator*() const { return *buffer_; }
    // The run succeeded: the buffer is in system memory and goes back to the pool.
    void done() { pool_.free_[bytes_] = std::move(buffer_); }

   private:
    Pool& pool_;
    uint64_t bytes_;
    std::unique_ptr<Buffer> buffer_;
  };

 private:
  std::map<uint64_t, std::unique_ptr<Buffer>> free_;
};

// A new pattern for every run, so that stale data never passes a check.
uint64_t next_seed() {
  static uint64_t seed = 1;
  return ++seed;
}

// Holds a switch on for the life of the object (the copy floor, a module parameter).
class Scoped {
 public:
  Scoped(const std::function<void()>& on, std::function<void()> off) : off_(std::move(off)) {
    on();
  }
  Scoped(const Scoped&) = delete;
  Scoped& operator=(const Scoped&) = delete;
  Scoped(Scoped&&) = delete;
  Scoped& operator=(Scoped&&) = delete;
  ~Scoped() {
    try {
      off_();
    } catch (const std::exception& err) {
      record_failure(std::string("cannot switch back: ") + err.what());
    }
  }

 private:
  std::function<void()> off_;
};

class Suite {
 public:
  Suite(Options options, std::vector<Device> devices, std::optional<TestHmm> test_hmm,
        std::optional<EmuControl> control)
      : o_(std::move(options)),
        devices_(std::move(devices)),
        test_hmm_(std::move(test_hmm)),
        control_(std::move(control)) {
    for (const Device& d : devices_) {
      if (d.emulated() && emu_ == nullptr) {
        emu_ = &d;
        // Kernels launch on a file of their own: a migration through a file that has launched
        // also maps the pages in the device (uapi 1.4), which the prefetch figures leave out.
        compute_.emplace("/dev/hmmgpu" + std::to_string(d.info().index));
      }
      if (!d.emulated() && sysram_ == nullptr) {
        sysram_ = &d;
      }
    }
  }

  void register_all();
  void describe() const;

 private:
  // Devices that prefetch, with the name the results use.
  [[nodiscard]] std::vector<std::pair<std::string, const Device*>> hmmgpu_subjects() const {
    std::vector<std::pair<std::string, const Device*>> s;
    if (emu_ != nullptr) {
      s.emplace_back("emu", emu_);
    }
    if (sysram_ != nullptr) {
      s.emplace_back("sysram", sysram_);
    }
    return s;
  }
  [[nodiscard]] bool group(const std::string& name) const { return o_.groups.contains(name); }
  [[nodiscard]] static bool fits(const Device& d, uint64_t bytes) {
    return bytes <= d.info().vram_size;
  }

  void register_prefetch_group(const std::vector<uint64_t>& sizes);
  void register_fault_group(uint64_t bytes);
  void register_prefetch(const std::string& subject, const Device& device, uint64_t bytes,
                         bool floor);
  void register_prefetch_test_hmm(uint64_t bytes);
  void register_fault_back(const std::string& subject, const Device* device, bool random,
                           uint64_t bytes, const std::string& variant);
  void register_round_trip(const std::string& subject, const Device& device);
  void register_compute(const std::string& kernel, uint64_t bytes, bool prefetch);
  void register_oversub(double factor);
  [[nodiscard]] std::function<void()> floor_switch(bool on) const {
    return [this, on] { control_->copy_floor(on); };
  }

  Options o_;
  std::vector<Device> devices_;
  std::optional<TestHmm> test_hmm_;
  std::optional<EmuControl> control_;
  const Device* emu_ = nullptr;
  std::optional<Device> compute_;  // the emulated GPU again, for launches
  const Device* sysram_ = nullptr;
  ModuleParam fault_around_{"fault_around_pages"};
  Pool pool_;
};

void Suite::register_prefetch(const std::string& subject, const Device& device, uint64_t bytes,
                              bool floor) {
  register_measurement(
      "prefetch/" + subject + "/" + size_name(bytes), bytes, [=, this, &device](Sample& s) {
        Pool::Lease lease(pool_, bytes);
        const Buffer& buf = *lease;
        const uint64_t seed = next_seed();
        buf.fill(seed);
        std::optional<Scoped> floored;
        if (floor) {
          floored.emplace(floor_switch(true), floor_switch(false));
        }
        s.phase("to_device", [&] { device.migrate(buf, HMMGPU_MIGRATE_TO_DEVICE); });
        device.check_residency(buf, true, "after the migration to the device");
        s.phase("to_system", [&] { device.migrate(buf, HMMGPU_MIGRATE_TO_SYSTEM); });
        device.check_residency(buf, false, "after the migration to system memory");
        if (!floor) {
          buf.check(seed, "after the round trip");
        }
        lease.done();
      });
}

void Suite::register_prefetch_test_hmm(uint64_t bytes) {
  register_measurement("prefetch/test_hmm/" + size_name(bytes), bytes, [=, this](Sample& s) {
    Pool::Lease lease(pool_, bytes);
    const Buffer& buf = *lease;
    const uint64_t seed = next_seed();
    buf.fill(seed);
    std::vector<uint64_t> out;
    const double with_verify = timed([&] { test_hmm_->to_device(buf, out); });
    check_pattern(out.data(), out.size(), seed, "returned by HMM_DMIRROR_MIGRATE_TO_DEV");
    s.phase("to_system", [&] { test_hmm_->to_system(buf); });
    buf.check(seed, "after the round trip");
    // MIGRATE_TO_DEV's verification copy alone (bounce buffer, copy out of the mirror,
    // copy_to_user): HMM_DMIRROR_READ of the same pages, the second time, when the first has
    // filled the mirror. (Of system pages: see TestHmm::read.)
    // The least disturbed of three reads: under TCG one read can take longer than the whole
    // migration did, and the difference must stay a time.
    test_hmm_->read(buf, out);
    double verify = with_verify;
    for (int i = 0; i < 3; i++) {
      out.assign(out.size(), 0);
      verify = std::min(verify, timed([&] { test_hmm_->read(buf, out); }));
      check_pattern(out.data(), out.size(), seed, "returned by HMM_DMIRROR_READ");
    }
    // A disturbed read must not make the migration look free: in quiet runs the copy is a third
    // to two fifths of it, so at most half is taken off.
    verify = std::min(verify, with_verify / 2);
    s.add_phase("to_device", with_verify - verify, true);
    s.add_phase("to_device_with_verify", with_verify, false);
    s.add_phase("verify_copy", verify, false);
    lease.done();
  });
}

// Subject `device`, or test_hmm when it is null.
void Suite::register_fault_back(const std::string& subject, const Device* device, bool random,
                                uint64_t bytes, const std::string& variant) {
  const std::string name =
      "fault_back/" + subject + (random ? "/random/" : "/seq/") + size_name(bytes);
  register_measurement(name, bytes, [=, this](Sample& s) {
    Pool::Lease lease(pool_, bytes);
    const Buffer& buf = *lease;
    const std::vector<uint32_t> order = page_order(buf.pages(), random);
    const uint64_t seed = next_seed();
    buf.fill(seed);
    std::optional<Scoped> floored;
    if (variant == "floor") {
      floored.emplace(floor_switch(true), floor_switch(false));
    }
    std::optional<Scoped> fault_around;
    if (variant == "fa-off") {
      const std::string was = fault_around_.get();
      fault_around.emplace([this] { fault_around_.set("1"); },
                           [this, was] { fault_around_.set(was); });
    }
    std::vector<uint64_t> out;
    if (device != nullptr) {
      device->migrate(buf, HMMGPU_MIGRATE_TO_DEVICE);
    } else {
      test_hmm_->to_device(buf, out);
    }
    const uint64_t driver0 = device != nullptr ? device->counters().cpu_faults : 0;
    const uint64_t faults0 = process_faults();
    uint64_t sink = 0;
    s.phase("fault_back", [&] { sink = buf.touch(order); });
    const uint64_t faults = process_faults() - faults0;
    (void)sink;
    s.set("faults", static_cast<double>(faults));
    s.set("us_per_fault", faults != 0 ? s.seconds() * 1e6 / static_cast<double>(faults) : 0);
    if (device != nullptr) {
      s.set("driver_faults", static_cast<double>(device->counters().cpu_faults - driver0));
      device->check_residency(buf, false, "after the CPU faults");
    }
    if (variant != "floor") {
      buf.check(seed, "after the CPU faults");
    }
    lease.done();
  });
}

// The device's round trip, what every copy a CPU fault waits for costs at least: 64 NOPs on the
// first copy channel, one at a time, each waited for (the ioctl's time and the driver's own, from
// its doorbell to the completion interrupt).
void Suite::register_round_trip(const std::string& subject, const Device& device) {
  constexpr int kNops = 64;
  register_measurement("round_trip/" + subject + "/nop", 0, [&device](Sample& s) {
    const uint32_t queue = device.info().num_channels > 0 ? 1 : 0;
    double driver = 0;
    s.phase("nop", [&] {
      for (int i = 0; i < kNops; ++i) {
        driver += device.nop(queue);
      }
    });
    s.set("us_per_nop", s.seconds() * 1e6 / kNops);
    s.set("driver_us_per_nop", driver * 1e6 / kNops);
  });
}

// stream: INCREMENT_U32 (every word read and written once); reduction: SUM_U64 (every word read
// once, one result).
void Suite::register_compute(const std::string& kernel, uint64_t bytes, bool prefetch) {
  const bool stream = kernel == "stream";
  const std::string name =
      std::string(prefetch ? "prefetch_run/" : "first_touch/") + kernel + "/" + size_name(bytes);
  register_measurement(name, bytes, [=, this](Sample& s) {
    const Device& dev = *compute_;
    Pool::Lease lease(pool_, bytes);
    const Buffer& buf = *lease;
    const uint64_t seed = next_seed();
    buf.fill(seed);
    const uint64_t want = stream ? 0 : Buffer::pattern_sum(seed, bytes / 8);
    const auto run = [&] {
      const uint64_t got = stream ? dev.launch(HMMGPU_KERNEL_INCREMENT_U32, buf, bytes / 4, 1)
                                  : dev.launch(HMMGPU_KERNEL_SUM_U64, buf, bytes / 8, 0);
      if (got != want) {
        throw std::runtime_error("SUM_U64 returned " + std::to_string(got) + ", not " +
                                 std::to_string(want));
      }
    };
    if (prefetch) {
      s.phase("migrate", [&] { dev.migrate(buf, HMMGPU_MIGRATE_TO_DEVICE); });
    }
    s.phase("kernel", run);
    if (prefetch) {
      s.phase("resident_kernel", run, false);
    }
    // Back to system memory (whatever the device moved), then the CPU checks what it wrote.
    dev.move_back(buf);
    buf.check(seed, "after the kernel", stream ? (prefetch ? 2 : 1) : 0);
    lease.done();
  });
}

void Suite::register_oversub(double factor) {
  const uint64_t bytes =
      bytes_of(factor * static_cast<double>(emu_->info().vram_size) / static_cast<double>(kMiB));
  std::ostringstream name;
  name << "oversub/stream/" << factor << "x";
  register_measurement(name.str(), bytes, [=, this](Sample& s) {
    const Device& dev = *compute_;
    Pool::Lease lease(pool_, bytes);
    const Buffer& buf = *lease;
    const uint64_t seed = next_seed();
    buf.fill(seed);
    const hmmgpu_counters c0 = dev.counters();
    s.phase("kernel", [&] { (void)dev.launch(HMMGPU_KERNEL_INCREMENT_U32, buf, bytes / 4, 1); });
    const hmmgpu_counters c1 = dev.counters();
    s.set("evicted_pages", static_cast<double>(c1.evicted_pages - c0.evicted_pages));
    s.set("device_faults", static_cast<double>(c1.device_faults - c0.device_faults));
    s.set("to_device_pages", static_cast<double>(c1.to_device_pages - c0.to_device_pages));
    dev.move_back(buf);
    buf.check(seed, "after the kernel", 1);
    lease.done();
  });
}

void Suite::register_all() {
  std::vector<uint64_t> sizes;
  for (const double mib : o_.sizes_mib) {
    sizes.push_back(bytes_of(mib));
  }
  if (group("prefetch")) {
    register_prefetch_group(sizes);
  }
  if (group("floor") && emu_ != nullptr && control_) {
    for (const uint64_t bytes : sizes) {
      if (fits(*emu_, bytes)) {
        register_prefetch("emu-floor", *emu_, bytes, true);
      }
    }
  }
  if (group("faults")) {
    register_fault_group(bytes_of(o_.fault_mib));
  }
  const uint64_t compute_bytes = bytes_of(o_.compute_mib);
  if (group("compute") && emu_ != nullptr && emu_->computes() && fits(*emu_, compute_bytes)) {
    for (const char* kernel : {"stream", "reduction"}) {
      register_compute(kernel, compute_bytes, false);
      register_compute(kernel, compute_bytes, true);
    }
  }
  if (group("oversub") && emu_ != nullptr && emu_->computes()) {
    for (const double factor : o_.oversub) {
      register_oversub(factor);
    }
  }
}

void Suite::register_prefetch_group(const std::vector<uint64_t>& sizes) {
  for (const uint64_t bytes : sizes) {
    for (const auto& [subject, device] : hmmgpu_subjects()) {
      if (fits(*device, bytes)) {
        register_prefetch(subject, *device, bytes, false);
      }
    }
    if (test_hmm_) {
      register_prefetch_test_hmm(bytes);
    }
  }
}

void Suite::register_fault_group(uint64_t bytes) {
  for (const auto& [subject, device] : hmmgpu_subjects()) {
    register_round_trip(subject, *device);
  }
  for (const bool random : {false, true}) {
    for (const auto& [subject, device] : hmmgpu_subjects()) {
      if (!fits(*device, bytes)) {
        continue;
      }
      register_fault_back(subject, device, random, bytes, "");
      if (subject == "emu" && fault_around_.writable()) {
        register_fault_back("emu-fa-off", device, random, bytes, "fa-off");
      }
    }
    if (test_hmm_) {
      register_fault_back("test_hmm", nullptr, random, bytes, "");
    }
  }
  if (group("floor") && emu_ != nullptr && control_ && fits(*emu_, bytes)) {
    register_fault_back("emu-floor", emu_, false, bytes, "floor");
  }
}

// The run's context in the JSON: what was measured on what.
void Suite::describe() const {
  utsname u{};
  ::uname(&u);
  benchmark::AddCustomContext("hmmgpu_kernel", u.release);
  benchmark::AddCustomContext("hmmgpu_vm", std::getenv("HMMGPU_VM") != nullptr ? "1" : "0");
  for (const auto& [subject, device] : hmmgpu_subjects()) {
    const hmmgpu_info& i = device->info();
    std::ostringstream d;
    d << i.name << ", /dev/hmmgpu" << i.index << ", VRAM " << (i.vram_size >> 20U) << " MiB, "
      << i.num_channels << " channels";
    benchmark::AddCustomContext("hmmgpu_" + subject, d.str());
    benchmark::AddCustomContext("hmmgpu_" + subject + "_vram", std::to_string(i.vram_size));
    benchmark::AddCustomContext("hmmgpu_" + subject + "_channels", std::to_string(i.num_channels));
  }
  benchmark::AddCustomContext("hmmgpu_test_hmm", test_hmm_ ? "1" : "0");
  benchmark::AddCustomContext("hmmgpu_copy_floor", control_ ? "1" : "0");
  if (fault_around_.writable()) {
    benchmark::AddCustomContext("hmmgpu_fault_around_pages", fault_around_.get());
  }
}

}  // namespace
}  // namespace hmmgpu::bench

int main(int argc, char** argv) {
  using namespace hmmgpu::bench;
  std::optional<Suite> suite;  // lives while the benchmarks run
  return run_benchmarks("hmmgpu-bench", argc, argv, 5, /*one_run=*/true, [&](int n, char** args) {
    Options options = parse(n, args);
    std::vector<Device> devices = Device::open_all();
    std::optional<TestHmm> test_hmm = TestHmm::open();
    if (devices.empty() && !test_hmm) {
      throw std::runtime_error("no hmmgpu device that migrates and no test_hmm");
    }
    suite.emplace(std::move(options), std::move(devices), std::move(test_hmm),
                  EmuControl::from_env());
    suite->register_all();
    suite->describe();
  });
}
