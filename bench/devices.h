// SPDX-License-Identifier: GPL-2.0
// What the guest benchmark measures with: a pattern-filled buffer, an hmmgpu device, the kernel's
// test_hmm device, the emulator's host-side control file (SPEC 8.1/8.2) and module parameters.
// Every failure throws std::runtime_error (or std::system_error) that says what and why.
#pragma once

#include <uapi/hmmgpu.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hmmgpu::bench {

extern const size_t kPage;

// Throws unless words[i] holds pattern(seed, i) (+ `add` in each 32-bit half); `what` names the
// step in the message.
void check_pattern(const uint64_t* words, size_t count, uint64_t seed, const char* what,
                   uint32_t add = 0);

// An anonymous private mapping, unmapped on destruction.
class Buffer {
 public:
  explicit Buffer(size_t bytes);
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&&) = delete;
  Buffer& operator=(Buffer&&) = delete;
  ~Buffer();

  [[nodiscard]] uint64_t* data() const { return data_; }
  [[nodiscard]] size_t bytes() const { return bytes_; }
  [[nodiscard]] size_t pages() const { return bytes_ / kPage; }

  // Word i holds pattern(seed, i).
  void fill(uint64_t seed) const;
  // check_pattern() of the buffer (`add` as HMMGPU_KERNEL_INCREMENT_U32 adds).
  void check(uint64_t seed, const char* what, uint32_t add = 0) const {
    check_pattern(data_, bytes_ / 8, seed, what, add);
  }
  // The sum of the words, wrapping (HMMGPU_KERNEL_SUM_U64).
  [[nodiscard]] static uint64_t pattern_sum(uint64_t seed, size_t words);
  // Reads one word of every page, in `order` (page indexes); returns their sum.
  [[nodiscard]] uint64_t touch(const std::vector<uint32_t>& order) const;

 private:
  uint64_t* data_ = nullptr;
  size_t bytes_ = 0;
};

// Page indexes 0..pages-1, in address order or shuffled with a fixed seed.
[[nodiscard]] std::vector<uint32_t> page_order(size_t pages, bool random);

// CPU faults taken by this process so far (minor and major, getrusage).
[[nodiscard]] uint64_t process_faults();

// An open /dev/hmmgpuN.
class Device {
 public:
  explicit Device(const std::string& path);
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  Device(Device&& other) noexcept;
  Device& operator=(Device&&) = delete;
  ~Device();

  // Every /dev/hmmgpuN that migrates, in N order.
  [[nodiscard]] static std::vector<Device> open_all();

  [[nodiscard]] const hmmgpu_info& info() const { return info_; }
  [[nodiscard]] bool emulated() const { return info_.backend == HMMGPU_BACKEND_EMU; }
  [[nodiscard]] bool computes() const { return (info_.caps & HMMGPU_CAP_COMPUTE) != 0; }

  // HMMGPU_IOCTL_MIGRATE of the whole buffer; throws unless every page moved.
  void migrate(const Buffer& buffer, uint32_t flags) const;
  // HMMGPU_IOCTL_MIGRATE to system memory of whatever of the buffer is in VRAM; throws unless
  // every page is in system memory afterwards.
  void move_back(const Buffer& buffer) const;
  // HMMGPU_IOCTL_RESIDENCY: throws unless every page of the buffer is in this device's VRAM
  // (`on_device`) or in system memory.
  void check_residency(const Buffer& buffer, bool on_device, const char* what) const;
  [[nodiscard]] hmmgpu_counters counters() const;
  // HMMGPU_IOCTL_NOP of one NOP on `queue`, waited for: the driver's time from the doorbell to
  // the completion interrupt, in seconds.
  [[nodiscard]] double nop(uint32_t queue) const;
  // HMMGPU_IOCTL_LAUNCH with HMMGPU_LAUNCH_WAIT on stream 0; returns the kernel's result.
  [[nodiscard]] uint64_t launch(uint32_t kernel, const Buffer& buffer, uint64_t count,
                                uint64_t scalar) const;

 private:
  int fd_ = -1;
  hmmgpu_info info_{};
};

// The kernel's reference HMM driver, /dev/hmm_dmirror0 (lib/test_hmm.c).
class TestHmm {
 public:
  // nullopt when test_hmm.ko is not loaded.
  [[nodiscard]] static std::optional<TestHmm> open();
  TestHmm(const TestHmm&) = delete;
  TestHmm& operator=(const TestHmm&) = delete;
  TestHmm(TestHmm&& other) noexcept;
  TestHmm& operator=(TestHmm&&) = delete;
  ~TestHmm();

  // HMM_DMIRROR_MIGRATE_TO_DEV: migrates, then copies the device's data into `out` for
  // verification (both inside the ioctl).
  void to_device(const Buffer& buffer, std::vector<uint64_t>& out) const;
  // HMM_DMIRROR_MIGRATE_TO_SYS.
  void to_system(const Buffer& buffer) const;
  // HMM_DMIRROR_READ: the same copy out of the mirror as MIGRATE_TO_DEV's verification, after
  // faulting in what the mirror lacks. Only for pages in system memory: 6.12's test_hmm
  // reads device-private pages that its fault path put in the mirror as if they were system
  // pages, and oopses.
  void read(const Buffer& buffer, std::vector<uint64_t>& out) const;

 private:
  explicit TestHmm(int fd) : fd_(fd) {}
  // `out`: the user address the ioctl writes the data to, or 0.
  void command(unsigned long request, const Buffer& buffer, uintptr_t out, const char* what) const;
  int fd_ = -1;
};

// The emulator's control file (SPEC 8.1), when the VM runner shares it ($HMMGPU_EMU_CONTROL).
class EmuControl {
 public:
  [[nodiscard]] static std::optional<EmuControl> from_env();
  // Appends `line` and waits until the emulator has acknowledged it.
  void command(const std::string& line) const;
  // SPEC 8.2: the copy floor of every emulated GPU on or off.
  void copy_floor(bool on) const;

 private:
  EmuControl(std::string path, uint32_t gpus) : path_(std::move(path)), gpus_(gpus) {}
  [[nodiscard]] uint64_t acked() const;
  std::string path_;
  uint32_t gpus_ = 0;
};

// A writable parameter of hmmgpu.ko in /sys/module/hmmgpu/parameters.
class ModuleParam {
 public:
  explicit ModuleParam(std::string name);
  [[nodiscard]] bool writable() const;
  [[nodiscard]] std::string get() const;
  void set(const std::string& value) const;

 private:
  std::string path_;
};

}  // namespace hmmgpu::bench
