// SPDX-License-Identifier: GPL-2.0
#include "gpu.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>

#include "log.h"

namespace hmmgpu {

using regs::DescStatus;
using regs::FatalError;

namespace {

constexpr int kServerPollMs = 50;  // heartbeat period, well under the 100 ms the SPEC promises
constexpr int kHungPollMs = 10;    // how often a hung engine looks for unhang

UniqueFd listen_on(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    throw std::system_error(ENAMETOOLONG, std::generic_category(), "socket path " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(check_sys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  ::unlink(path.c_str());  // a stale socket from an earlier run
  check_sys(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)),
            ("bind " + path).c_str());
  check_sys(::listen(fd.get(), 4), "listen");
  return fd;
}

// Sends one ivshmem server message: a little-endian int64, optionally with one fd.
void send_msg(int sock, int64_t value, int fd) {
  iovec iov{.iov_base = &value, .iov_len = sizeof(value)};  // x86-64 is little-endian
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  if (fd >= 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  if (check_sys(::sendmsg(sock, &msg, MSG_NOSIGNAL), "sendmsg") != sizeof(value)) {
    throw std::system_error(EIO, std::generic_category(), "short sendmsg");
  }
}

}  // namespace

const char* status_name(DescStatus status) {
  switch (status) {
    case DescStatus::kOk:
      return "ok";
    case DescStatus::kBadOpcode:
      return "bad opcode";
    case DescStatus::kBadFlags:
      return "reserved flag set";
    case DescStatus::kBadArg:
      return "argument out of range, or unused argument not zero";
    case DescStatus::kBadAlign:
      return "misaligned address";
    case DescStatus::kBadAddress:
      return "address outside guest RAM, or VA not below 2^48";
    case DescStatus::kBadVram:
      return "range outside VRAM";
    case DescStatus::kBadPeer:
      return "bad peer index";
    case DescStatus::kOverlap:
      return "source and destination overlap";
    case DescStatus::kInjected:
      return "injected copy failure";
    case DescStatus::kBadContext:
      return "bad or unbound context";
    case DescStatus::kBadPte:
      return "reserved bit in a page-table entry";
    case DescStatus::kMmuFault:
      return "stalled launch cancelled";
  }
  return "?";
}

DescStatus check_common(const Descriptor& desc, size_t used_args) {
  if ((desc.flags & ~regs::kFlagsValidMask) != 0) {
    return DescStatus::kBadFlags;
  }
  for (size_t i = used_args; i < desc.args.size(); ++i) {
    if (desc.args.at(i) != 0) {
      return DescStatus::kBadArg;
    }
  }
  return DescStatus::kOk;
}

// ---- SharedPage ----

template <typename T>
std::atomic_ref<T> SharedPage::field(uint32_t off) const {
  // Offsets are device constants or masked ring slots; this only catches model bugs.
  if (off % sizeof(T) != 0 || off + sizeof(T) > size_) {
    std::abort();
  }
  return std::atomic_ref<T>(*reinterpret_cast<T*>(base_ + off));
}

uint32_t SharedPage::load32(uint32_t off, std::memory_order order) const {
  return field<uint32_t>(off).load(order);
}
void SharedPage::store32(uint32_t off, uint32_t value, std::memory_order order) const {
  field<uint32_t>(off).store(value, order);
}
uint64_t SharedPage::load64(uint32_t off, std::memory_order order) const {
  return field<uint64_t>(off).load(order);
}
void SharedPage::store64(uint32_t off, uint64_t value, std::memory_order order) const {
  field<uint64_t>(off).store(value, order);
}

// ---- construction, reset ----

Gpu::Gpu(GpuConfig config, const GuestRam& ram, DoorbellHook on_doorbell, PeerLookup peers)
    : config_(std::move(config)),
      ram_(ram),
      on_doorbell_(std::move(on_doorbell)),
      shm_fd_(make_memfd("hmmgpu-shm", regs::kShmSize)),
      shm_(shm_fd_.get(), regs::kShmSize),
      page_(shm_.data(), shm_.size()),
      vram_fd_(make_memfd("hmmgpu-vram", config_.vram_size)),
      vram_(vram_fd_.get(), config_.vram_size),
      vram_base_(vram_.data()),
      stop_fd_(make_eventfd()),
      peers_(std::move(peers)),
      queues_(num_queues()),
      roots_(config_.contexts),
      stalls_(num_queues()) {
  init_device();
  for (uint32_t v = 0; v < config_.vectors; ++v) {
    doorbell_fds_.push_back(make_eventfd());
  }
  listen_fd_ = listen_on(config_.socket_path);
  threads_.emplace_back([this] { server_loop(); });
  for (uint32_t q = 0; q < num_queues(); ++q) {
    threads_.emplace_back([this, q] { engine_loop(q); });
  }
  log::debug("gpu%u: listening on %s", config_.index, config_.socket_path.c_str());
}

Gpu::Gpu(GpuConfig config, const GuestRam& ram, Detached memory, PeerLookup peers)
    : config_(std::move(config)),
      ram_(ram),
      page_(memory.shm.data(), memory.shm.size()),
      vram_base_(memory.vram.data()),
      detached_(true),
      peers_(std::move(peers)),
      queues_(num_queues()),
      roots_(config_.contexts),
      stalls_(num_queues()) {
  if (memory.shm.size() != regs::kShmSize || memory.vram.size() != config_.vram_size) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "detached GPU: BAR2 or VRAM buffer of the wrong size");
  }
  init_device();
}

Gpu::~Gpu() {
  stop();
  if (listen_fd_.valid()) {
    ::unlink(config_.socket_path.c_str());
  }
}

void Gpu::stop() {
  {
    const std::scoped_lock lock(mmu_mutex_);
    stopping_ = true;
  }
  stall_cv_.notify_all();
  if (stop_fd_.valid()) {
    signal_eventfd(stop_fd_.get());
  }
  for (std::jthread& thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
}

void Gpu::init_device() {
  if (num_queues() > regs::kMaxQueues || config_.vectors < num_queues() + 1 ||
      config_.contexts == 0) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "bad GPU configuration: queues, vectors or contexts");
  }
  init_identification();
  reset_locked(/*clear_control=*/true);  // no thread runs yet
  if (config_.copy_floor) {
    set_copy_floor(true);
  }
}

void Gpu::init_identification() {
  std::memcpy(page_.at(regs::reg::kSignature), regs::kSignature.data(), regs::kSignature.size());
  page_.store32(regs::reg::kVersion, regs::kVersion, std::memory_order_relaxed);
  page_.store32(regs::reg::kCaps,
                regs::kCapsAlways | (config_.compute != 0 ? regs::kCapCompute : 0),
                std::memory_order_relaxed);
  page_.store64(regs::reg::kVramSize, config_.vram_size, std::memory_order_relaxed);
  page_.store32(regs::reg::kNumQueues, num_queues(), std::memory_order_relaxed);
  page_.store32(regs::reg::kNumVectors, config_.vectors, std::memory_order_relaxed);
  page_.store32(regs::reg::kDoorbellPeer, regs::kDoorbellPeer, std::memory_order_relaxed);
  page_.store32(regs::reg::kNumChannels, config_.channels, std::memory_order_relaxed);
  page_.store32(regs::reg::kShmSize, regs::kShmSize, std::memory_order_relaxed);
  page_.store32(regs::reg::kDeviceIndex, config_.index, std::memory_order_relaxed);
  page_.store32(regs::reg::kDmaBits, regs::kDmaBits, std::memory_order_relaxed);
  page_.store32(regs::reg::kNumCompute, config_.compute, std::memory_order_relaxed);
  page_.store32(regs::reg::kNumContexts, config_.contexts, std::memory_order_relaxed);
  page_.store32(regs::reg::kFaultVector, fault_vector(), std::memory_order_relaxed);
  page_.store64(regs::reg::kPeerGroup, config_.peer_group, std::memory_order_relaxed);
  const std::string name = "hmmgpu-emu gpu" + std::to_string(config_.index);
  std::memcpy(page_.at(regs::reg::kName), name.c_str(),
              std::min<size_t>(name.size(), regs::reg::kNameSize - 1));
  for (uint32_t q = 0; q < num_queues(); ++q) {
    page_.store32(regs::queue_reg(q, regs::qreg::kRingOffset), regs::ring_offset(q),
                  std::memory_order_relaxed);
    page_.store32(regs::queue_reg(q, regs::qreg::kRingEntries), regs::kRingEntries,
                  std::memory_order_relaxed);
    page_.store32(regs::queue_reg(q, regs::qreg::kVector), q, std::memory_order_relaxed);
  }
  // The shm fd is handed to a client only after this, and sendmsg orders these stores.
}

// SPEC section 6. Caller holds exec_mutex_ exclusively (or no thread runs yet), so no engine is
// inside a descriptor or a wave.
void Gpu::reset_locked(bool clear_control) {
  reset_mmu_locked();  // discards launches (with queues_ below), unbinds, empties the TLB
  for (uint32_t q = 0; q < num_queues(); ++q) {
    queues_.at(q) = QueueState{};
    page_.store32(regs::queue_reg(q, regs::qreg::kHead), 0, std::memory_order_relaxed);
    page_.store32(regs::queue_reg(q, regs::qreg::kTail), 0, std::memory_order_relaxed);
    page_.store64(regs::queue_reg(q, regs::qreg::kFence), 0, std::memory_order_relaxed);
    page_.store32(regs::queue_reg(q, regs::qreg::kErrors), 0, std::memory_order_relaxed);
  }
  if (clear_control) {
    control_ack_ = 0;
    page_.store32(regs::reg::kControl, 0, std::memory_order_relaxed);
    page_.store32(regs::reg::kControlSeq, 0, std::memory_order_relaxed);
    page_.store32(regs::reg::kControlAck, 0, std::memory_order_relaxed);
  }
  halted_.store(false, std::memory_order_relaxed);
  page_.store32(regs::reg::kError, 0, std::memory_order_relaxed);
  // Release: a driver that sees READY (acquire) also sees the cleared queue registers.
  page_.store32(regs::reg::kStatus, regs::kStatusReady, std::memory_order_release);
  log::debug("gpu%u: reset", config_.index);
}

// Caller holds exec_mutex_ (shared or exclusive). The first fatal error wins.
void Gpu::halt_locked(FatalError error) {
  if (halted_.exchange(true)) {
    return;
  }
  page_.store32(regs::reg::kError, static_cast<uint32_t>(error), std::memory_order_relaxed);
  // Release: a driver that sees HALTED (acquire) also sees ERROR.
  page_.store32(regs::reg::kStatus, regs::kStatusHalted, std::memory_order_release);
  log::guest_error("gpu%u: device halted, fatal error %u", config_.index,
                   static_cast<uint32_t>(error));
}

// ---- server thread ----

void Gpu::server_loop() {
  uint64_t heartbeat = 0;
  while (true) {
    std::array<pollfd, 3> fds{{{.fd = stop_fd_.get(), .events = POLLIN, .revents = 0},
                               {.fd = client_fd_.get(), .events = POLLIN, .revents = 0},
                               {.fd = listen_fd_.get(), .events = POLLIN, .revents = 0}}};
    const int ret = ::poll(fds.data(), fds.size(), kServerPollMs);
    if (!hung()) {  // a hung GPU's heart stops (SPEC 8.1)
      // Relaxed: the heartbeat orders nothing, it only has to change.
      page_.store64(regs::reg::kHeartbeat, ++heartbeat, std::memory_order_relaxed);
    }
    if (ret < 0 && errno != EINTR) {
      log::warn("gpu%u: poll: %s", config_.index, std::generic_category().message(errno).c_str());
    }
    if (ret <= 0) {
      continue;
    }
    if (fds[0].revents != 0) {
      return;
    }
    // The client first: a disconnect and the next connect seen together must not refuse the new
    // client.
    if (fds[1].revents != 0) {
      std::array<char, 64> buf{};
      const ssize_t n = ::recv(client_fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        disconnect_client();
      }
    }
    if (fds[2].revents != 0) {
      accept_client();
    }
  }
}

void Gpu::accept_client() {
  UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!fd.valid()) {
    log::warn("gpu%u: accept: %s", config_.index, std::generic_category().message(errno).c_str());
    return;
  }
  if (client_fd_.valid()) {
    log::warn("gpu%u: refusing a second client", config_.index);
    return;  // closes it
  }
  try {
    send_handshake(fd.get());
  } catch (const std::system_error& err) {
    log::warn("gpu%u: handshake failed: %s", config_.index, err.what());
    return;
  }
  client_fd_ = std::move(fd);
  log::debug("gpu%u: client connected", config_.index);
}

// SPEC section 2.1, steps 1-5.
void Gpu::send_handshake(int fd) {
  send_msg(fd, 0, -1);
  send_msg(fd, regs::kClientPeer, -1);
  send_msg(fd, -1, shm_fd_.get());
  for (const UniqueFd& doorbell : doorbell_fds_) {
    send_msg(fd, regs::kDoorbellPeer, doorbell.get());
  }
  std::vector<UniqueFd> irqs;
  for (uint32_t v = 0; v < config_.vectors; ++v) {
    irqs.push_back(make_eventfd());
    send_msg(fd, regs::kClientPeer, irqs.back().get());
  }
  const std::unique_lock lock(exec_mutex_);
  irq_fds_ = std::move(irqs);
}

void Gpu::disconnect_client() {
  client_fd_.reset();
  const std::unique_lock lock(exec_mutex_);
  irq_fds_.clear();
  reset_locked(/*clear_control=*/true);
  log::debug("gpu%u: client disconnected", config_.index);
}

// ---- engine threads ----

void Gpu::engine_loop(uint32_t queue) {
  // Run the queue without waiting for a doorbell: work published while the GPU was hung, or while
  // a launch was stalled, may have had its doorbell consumed before.
  bool pending = false;
  while (true) {
    if (hung()) {
      // SPEC 8.1: execute nothing and leave the doorbells pending until unhang.
      pending = true;
      pollfd stop{.fd = stop_fd_.get(), .events = POLLIN, .revents = 0};
      if (::poll(&stop, 1, kHungPollMs) > 0) {
        return;
      }
      continue;
    }
    if (stalled(queue)) {
      // SPEC 4.8: the queue does not advance until a replay, cancel, unbind or reset.
      if (!wait_unstalled(queue)) {
        return;
      }
      pending = true;
      continue;
    }
    if (!pending) {
      const Wake wake = wait_doorbell(queue);
      if (wake == Wake::kStop) {
        return;
      }
      if (wake == Wake::kAgain) {
        continue;
      }
    }
    if (queue == 0) {
      handle_control();
    }
    pending = run_queue(queue) != Step::kIdle;  // kHung, kStalled: come back
  }
}

Gpu::Wake Gpu::wait_doorbell(uint32_t queue) {
  const int doorbell = doorbell_fds_.at(queue).get();
  std::array<pollfd, 2> fds{{{.fd = stop_fd_.get(), .events = POLLIN, .revents = 0},
                             {.fd = doorbell, .events = POLLIN, .revents = 0}}};
  if (::poll(fds.data(), fds.size(), -1) < 0) {
    return Wake::kAgain;  // EINTR
  }
  if (fds[0].revents != 0) {
    return Wake::kStop;
  }
  if (hung()) {
    return Wake::kAgain;  // the ring stays pending
  }
  // Consume the rings before looking at HEAD, so a ring arriving later wakes us again.
  const uint64_t rings = drain_eventfd(doorbell);
  if (rings == 0) {
    return Wake::kAgain;
  }
  log::debug("gpu%u: doorbell %u", config_.index, queue);
  on_doorbell_(rings);
  return Wake::kRun;
}

// SPEC section 3.3.
void Gpu::handle_control() {
  {
    // Most queue-0 doorbells carry no request: look first without waiting for every engine's step.
    const std::shared_lock lock(exec_mutex_);
    if (page_.load32(regs::reg::kControlSeq, std::memory_order_relaxed) == control_ack_) {
      return;
    }
  }
  const std::unique_lock lock(exec_mutex_);
  // Acquire: pairs with the driver's barrier between writing CONTROL and CONTROL_SEQ.
  const uint32_t seq = page_.load32(regs::reg::kControlSeq, std::memory_order_acquire);
  if (seq == control_ack_) {
    return;
  }
  const uint32_t control = page_.load32(regs::reg::kControl, std::memory_order_relaxed);
  if ((control & ~regs::kControlValidMask) != 0) {
    log::guest_error("gpu%u: reserved CONTROL bits 0x%x", config_.index, control);
    halt_locked(FatalError::kBadControl);
  } else if ((control & regs::kControlReset) != 0) {
    reset_locked(/*clear_control=*/false);
  }
  control_ack_ = seq;
  // Release: a driver that sees the ACK also sees the reset (or the halt).
  page_.store32(regs::reg::kControlAck, seq, std::memory_order_release);
}

// ---- detached devices ----

uint32_t Gpu::completed(uint32_t queue) const {
  if (!detached_) {
    throw std::logic_error("completed: the GPU has engine threads");
  }
  return queues_.at(queue).tail;
}

size_t Gpu::run_engine(uint32_t queue, size_t max_steps) {
  if (!detached_) {
    throw std::logic_error("run_engine: the GPU has engine threads");
  }
  // As engine_loop: a hung GPU and a stalled queue do nothing (SPEC 8.1, 4.8).
  if (queue >= num_queues() || hung() || stalled(queue)) {
    return 0;
  }
  if (queue == 0) {
    handle_control();
  }
  size_t steps = 0;
  while (steps < max_steps) {
    const Step step = step_queue(queue);
    if (step == Step::kIdle || step == Step::kHung) {
      break;
    }
    ++steps;
    if (step == Step::kStalled) {
      break;
    }
  }
  return steps;
}

void Gpu::disconnect() {
  if (!detached_) {
    throw std::logic_error("disconnect: the GPU has a server thread");
  }
  disconnect_client();
}

Gpu::Step Gpu::run_queue(uint32_t queue) {
  Step step = Step::kMore;
  while ((step = step_queue(queue)) == Step::kMore) {
  }
  return step;
}

// Executes the next published descriptor of `queue`, or the next wave of its launch: kMore when it
// did, kIdle when there is nothing to do or the device is halted, kHung when the GPU is hung
// (SPEC 8.1), kStalled when the launch stalled on faults (SPEC 4.8). Holds exec_mutex_ shared for
// one descriptor or wave, so a reset waits at most for that.
Gpu::Step Gpu::step_queue(uint32_t queue) {
  const std::shared_lock lock(exec_mutex_);
  if (hung()) {
    return Step::kHung;
  }
  if (halted_.load(std::memory_order_relaxed)) {
    return Step::kIdle;
  }
  if (queues_.at(queue).launch) {
    return run_wave(queue);
  }
  // Acquire: pairs with the driver's write barrier, so the descriptors before HEAD are visible.
  const uint32_t head =
      page_.load32(regs::queue_reg(queue, regs::qreg::kHead), std::memory_order_acquire);
  const uint32_t tail = queues_.at(queue).tail;  // our copy; the guest cannot move it
  if (head == tail) {
    return Step::kIdle;
  }
  if (head - tail > regs::kRingEntries) {
    log::guest_error("gpu%u: queue %u HEAD %u is more than %u past TAIL %u", config_.index, queue,
                     head, regs::kRingEntries, tail);
    halt_locked(FatalError::kBadHead);
    return Step::kIdle;
  }
  const uint32_t slot_off =
      regs::ring_offset(queue) + (tail & (regs::kRingEntries - 1)) * regs::kDescSize;
  const Descriptor desc = read_descriptor(slot_off);
  if (desc.opcode == regs::kOpLaunch && is_compute(queue)) {
    start_launch(queue, slot_off, desc);  // completes it when invalid
    return Step::kMore;
  }
  const DescStatus status = execute(queue, slot_off, desc);
  if (status == DescStatus::kInjected) {
    log::debug("gpu%u: queue %u descriptor %u: %s", config_.index, queue, tail,
               status_name(status));
  } else if (status != DescStatus::kOk) {
    log::guest_error("gpu%u: queue %u descriptor %u (opcode 0x%x): %s", config_.index, queue, tail,
                     desc.opcode, status_name(status));
  }
  complete(queue, slot_off, desc, status);
  return Step::kMore;
}

Descriptor Gpu::read_descriptor(uint32_t slot_off) const {
  // Relaxed: ordered by the acquire load of HEAD. Copied once so validation and execution see
  // the same values even if the guest rewrites the slot.
  const uint64_t word0 = page_.load64(slot_off, std::memory_order_relaxed);
  Descriptor desc;
  desc.opcode = static_cast<uint16_t>(word0 & 0xffffU);
  desc.flags = static_cast<uint16_t>((word0 >> 16U) & 0xffffU);
  desc.seqno = page_.load64(slot_off + regs::desc::kSeqno, std::memory_order_relaxed);
  for (uint32_t i = 0; i < regs::kDescArgs; ++i) {
    desc.args.at(i) = page_.load64(slot_off + regs::desc::kArg0 + 8 * i, std::memory_order_relaxed);
  }
  return desc;
}

// SPEC section 4.2: the opcodes and the queues that execute them, decoded in one place
// (OP_LAUNCH on a compute queue is started by step_queue).
DescStatus Gpu::execute(uint32_t queue, uint32_t slot_off, const Descriptor& desc) {
  switch (desc.opcode) {
    case regs::kOpNop:
      return check_common(desc, 0);
    case regs::kOpWrite64:
      return execute_write64(queue, desc);
    case regs::kOpCopy:
      return execute_copy(desc);
    case regs::kOpCopyList:
      return execute_copy_list(slot_off, desc);
    case regs::kOpCtxBind:
      return queue == 0 ? execute_ctx_bind(desc) : DescStatus::kBadOpcode;
    case regs::kOpTlbInvalidate:
      return queue == 0 ? execute_tlb_invalidate(desc) : DescStatus::kBadOpcode;
    case regs::kOpFaultReplay:
      return queue == 0 ? execute_fault_replay(desc) : DescStatus::kBadOpcode;
    case regs::kOpFaultCancel:
      return queue == 0 ? execute_fault_cancel(desc) : DescStatus::kBadOpcode;
    default:
      return DescStatus::kBadOpcode;  // OP_LAUNCH outside the compute queues included
  }
}

DescStatus Gpu::execute_write64(uint32_t queue, const Descriptor& desc) const {
  if (const DescStatus status = check_common(desc, 2); status != DescStatus::kOk) {
    return status;
  }
  const uint64_t addr = desc.args[0];
  if (addr % sizeof(uint64_t) != 0) {
    return DescStatus::kBadAlign;
  }
  std::byte* target = ram_.translate(addr, sizeof(uint64_t));
  if (target == nullptr) {
    return DescStatus::kBadAddress;
  }
  // Relaxed: the release store of the descriptor's STATUS publishes it.
  std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(target))
      .store(desc.args[1], std::memory_order_relaxed);
  log::debug("gpu%u: queue %u write64 0x%llx <- 0x%llx", config_.index, queue,
             static_cast<unsigned long long>(addr), static_cast<unsigned long long>(desc.args[1]));
  return DescStatus::kOk;
}

// ---- copy engine (SPEC 4.4) ----

std::byte* Gpu::vram_at(uint64_t offset, uint64_t len) const {
  const uint64_t size = config_.vram_size;
  // Written without offset + len so that nothing can overflow.
  if (len == 0 || offset >= size || len > size - offset) {
    return nullptr;
  }
  return vram_base_ + offset;
}

// Decodes the aperture word (ARG3). Reserved bits, the reserved aperture value 3 and a peer field
// without AP_PEER are ST_BAD_ARG; a peer naming no other device is reported per block, after the
// range checks (SPEC 5.1 order).
DescStatus Gpu::decode_apertures(uint64_t word, CopySide& src, CopySide& dst) const {
  using namespace regs::copy;
  if ((word & ~kApWordValidMask) != 0) {
    return DescStatus::kBadArg;
  }
  const auto side = [&](uint32_t ap_shift, uint32_t peer_shift, CopySide& out) {
    const auto aperture = static_cast<uint32_t>((word >> ap_shift) & kApMask);
    const auto peer = static_cast<uint32_t>((word >> peer_shift) & kPeerMask);
    out = CopySide{.aperture = aperture, .vram = nullptr, .bad_peer = false};
    switch (aperture) {
      case kApSysmem:
        return peer == 0;
      case kApVram:
        out.vram = this;
        return peer == 0;
      case kApPeer: {
        const Gpu* gpu = peer != config_.index && peers_ ? peers_(peer) : nullptr;
        out.vram = gpu == this ? nullptr : gpu;
        out.bad_peer = out.vram == nullptr;
        return true;
      }
      default:
        return false;
    }
  };
  if (!side(kSrcApShift, kSrcPeerShift, src) || !side(kDstApShift, kDstPeerShift, dst)) {
    return DescStatus::kBadArg;
  }
  return DescStatus::kOk;
}

// Validates and performs one copy block, checking in SPEC 5.1 order. Runs under exec_mutex_
// (shared) of this GPU only: a peer's VRAM mapping is constant and its fault ranges have their
// own leaf lock, so copies between two GPUs in both directions at once cannot deadlock.
DescStatus Gpu::copy_block(const CopySide& src, uint64_t src_addr, const CopySide& dst,
                           uint64_t dst_addr, uint64_t len) {
  using regs::copy::kApSysmem;
  const std::byte* from = nullptr;
  std::byte* to = nullptr;
  if (src.aperture == kApSysmem && (from = ram_.translate(src_addr, len)) == nullptr) {
    return DescStatus::kBadAddress;
  }
  if (dst.aperture == kApSysmem && (to = ram_.translate(dst_addr, len)) == nullptr) {
    return DescStatus::kBadAddress;
  }
  if (src.vram != nullptr && (from = src.vram->vram_at(src_addr, len)) == nullptr) {
    return DescStatus::kBadVram;
  }
  if (dst.vram != nullptr && (to = dst.vram->vram_at(dst_addr, len)) == nullptr) {
    return DescStatus::kBadVram;
  }
  if (src.bad_peer || dst.bad_peer) {
    return DescStatus::kBadPeer;
  }
  // Different memories are different mappings, so comparing host addresses covers "the same
  // memory" exactly; both ranges were checked to lie inside their mappings.
  const auto a = reinterpret_cast<uintptr_t>(from);
  const auto b = reinterpret_cast<uintptr_t>(to);
  if (a < b + len && b < a + len) {
    return DescStatus::kOverlap;
  }
  // A block that fails anyway does not use up a fail-copies count.
  if ((src.vram != nullptr && src.vram->vram_fault(src_addr, len)) ||
      (dst.vram != nullptr && dst.vram->vram_fault(dst_addr, len)) || consume_fail_copies()) {
    return DescStatus::kInjected;
  }
  if (!copy_floor()) {  // SPEC 8.2: with the floor on, a valid block completes moving nothing
    std::memcpy(to, from, len);
  }
  return DescStatus::kOk;
}

// What both copy opcodes check first: flags, ARG4..5 zero (ARG5 is OP_COPY_LIST's write-back
// field, zero on submission), and the aperture word in ARG3.
DescStatus Gpu::decode_copy(const Descriptor& desc, CopySide& src, CopySide& dst) const {
  if (const DescStatus status = check_common(desc, 4); status != DescStatus::kOk) {
    return status;
  }
  return decode_apertures(desc.args[3], src, dst);
}

DescStatus Gpu::execute_copy(const Descriptor& desc) {
  CopySide src;
  CopySide dst;
  if (const DescStatus status = decode_copy(desc, src, dst); status != DescStatus::kOk) {
    return status;
  }
  const uint64_t len = desc.args[2];
  if (len == 0 || len > regs::copy::kMaxLength) {
    return DescStatus::kBadArg;
  }
  return copy_block(src, desc.args[0], dst, desc.args[1], len);
}

DescStatus Gpu::execute_copy_list(uint32_t slot_off, const Descriptor& desc) {
  using namespace regs::copy;
  uint64_t copied = 0;
  const auto run = [&] {
    CopySide src;
    CopySide dst;
    if (const DescStatus status = decode_copy(desc, src, dst); status != DescStatus::kOk) {
      return status;
    }
    const uint64_t list = desc.args[0];
    const uint64_t count = desc.args[1];
    const uint64_t block = desc.args[2];
    if (count == 0 || count > kMaxEntries || !std::has_single_bit(block) || block < kMinBlock ||
        block > kMaxBlock) {
      return DescStatus::kBadArg;
    }
    if (list % kListAlign != 0) {
      return DescStatus::kBadAlign;
    }
    const std::byte* raw = ram_.translate(list, count * kEntrySize);  // count <= 4096: no overflow
    if (raw == nullptr) {
      return DescStatus::kBadAddress;
    }
    // One snapshot, so the guest rewriting the list meanwhile cannot make checks and use differ.
    std::vector<uint64_t> entries(count * 2);
    std::memcpy(entries.data(), raw, count * kEntrySize);
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t src_addr = entries[2 * i];
      const uint64_t dst_addr = entries[2 * i + 1];
      if (src_addr % block != 0 || dst_addr % block != 0) {
        return DescStatus::kBadAlign;
      }
      if (const DescStatus status = copy_block(src, src_addr, dst, dst_addr, block);
          status != DescStatus::kOk) {
        return status;
      }
      ++copied;
    }
    return DescStatus::kOk;
  };
  const DescStatus status = run();
  // Relaxed: the release store of STATUS in complete() publishes it.
  page_.store64(slot_off + regs::desc::kArg0 + 8 * kArgCompleted, copied,
                std::memory_order_relaxed);
  return status;
}

// ---- fault injection (SPEC 8.1) ----

void Gpu::inject_fail_copies(uint64_t count) { fail_copies_.store(count); }

void Gpu::inject_fail_vram(uint64_t start, uint64_t end) {
  const std::scoped_lock lock(fault_mutex_);
  vram_faults_.emplace_back(start, end);
  has_vram_faults_.store(true);
}

void Gpu::clear_faults() {
  const std::scoped_lock lock(fault_mutex_);
  fail_copies_.store(0);
  vram_faults_.clear();
  has_vram_faults_.store(false);
}

void Gpu::set_hung(bool hung) { hung_.store(hung, std::memory_order_release); }

void Gpu::set_copy_floor(bool on) {
  copy_floor_.store(on, std::memory_order_relaxed);
  log::warn("gpu%u: copy floor %s%s", config_.index, on ? "on" : "off",
            on ? ": copies move no data (benchmarks only, SPEC 8.2)" : "");
}

bool Gpu::vram_fault(uint64_t offset, uint64_t len) const {
  if (!has_vram_faults_.load()) {
    return false;
  }
  const std::scoped_lock lock(fault_mutex_);
  for (const auto& [start, end] : vram_faults_) {
    if (offset < end && start < offset + len) {
      return true;
    }
  }
  return false;
}

bool Gpu::consume_fail_copies() {
  uint64_t left = fail_copies_.load();
  while (left != 0 && !fail_copies_.compare_exchange_weak(left, left - 1)) {
  }
  return left != 0;
}

// SPEC section 4.3, in order; every store is a release so each step is visible before the next.
void Gpu::complete(uint32_t queue, uint32_t slot_off, const Descriptor& desc, DescStatus status) {
  QueueState& state = queues_.at(queue);
  page_.store32(slot_off + regs::desc::kStatus, static_cast<uint32_t>(status),
                std::memory_order_release);  // release: after the operation's own writes
  if (status != DescStatus::kOk) {
    page_.store32(regs::queue_reg(queue, regs::qreg::kErrors), ++state.errors,
                  std::memory_order_release);  // release: after STATUS
  }
  page_.store64(regs::queue_reg(queue, regs::qreg::kFence), desc.seqno,
                std::memory_order_release);  // release: FENCE >= s implies STATUS is visible
  page_.store32(regs::queue_reg(queue, regs::qreg::kTail), ++state.tail,
                std::memory_order_release);  // release: after FENCE; frees the slot
  if ((desc.flags & regs::kFlagIrq) != 0) {
    raise_irq_locked(queue);
  }
}

void Gpu::raise_irq_locked(uint32_t vector) const {
  if (vector < irq_fds_.size()) {
    signal_eventfd(irq_fds_[vector].get());  // the write orders after the stores above
  }
}

}  // namespace hmmgpu
