// SPDX-License-Identifier: GPL-2.0
#include "fake_qemu.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace hmmgpu::test {
namespace {

bool poll_in(int fd, int timeout_ms) {
  pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
  return ::poll(&pfd, 1, timeout_ms) == 1;
}

void expect(bool ok, const std::string& what) {
  if (!ok) {
    throw std::runtime_error("handshake: " + what);
  }
}

template <typename Pred>
bool wait_until(Pred pred, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

}  // namespace

Desc nop(uint64_t seqno, uint16_t flags) {
  return Desc{.opcode = regs::kOpNop, .flags = flags, .seqno = seqno, .args = {}};
}

Desc write64(uint64_t seqno, uint64_t addr, uint64_t value) {
  return Desc{.opcode = regs::kOpWrite64, .flags = 0, .seqno = seqno, .args = {addr, value}};
}

Desc copy(uint64_t seqno, uint64_t src, uint64_t dst, uint64_t len, uint64_t apertures,
          uint16_t flags) {
  return Desc{.opcode = regs::kOpCopy,
              .flags = flags,
              .seqno = seqno,
              .args = {src, dst, len, apertures, 0, 0}};
}

Desc copy_list(uint64_t seqno, uint64_t list, uint64_t count, uint64_t block, uint64_t apertures,
               uint16_t flags) {
  return Desc{.opcode = regs::kOpCopyList,
              .flags = flags,
              .seqno = seqno,
              .args = {list, count, block, apertures, 0, 0}};
}

Desc ctx_bind(uint64_t seqno, uint64_t context, uint64_t root) {
  return Desc{.opcode = regs::kOpCtxBind, .flags = 0, .seqno = seqno, .args = {context, root}};
}

Desc tlb_invalidate(uint64_t seqno, uint64_t context, uint64_t va, uint64_t len) {
  return Desc{
      .opcode = regs::kOpTlbInvalidate, .flags = 0, .seqno = seqno, .args = {context, va, len}};
}

Desc fault_replay(uint64_t seqno) {
  return Desc{.opcode = regs::kOpFaultReplay, .flags = 0, .seqno = seqno, .args = {}};
}

Desc fault_cancel(uint64_t seqno, uint64_t context, uint64_t va, uint64_t mode) {
  return Desc{
      .opcode = regs::kOpFaultCancel, .flags = 0, .seqno = seqno, .args = {context, va, mode}};
}

Desc launch(uint64_t seqno, uint32_t context, uint32_t kernel, uint64_t count, uint64_t va0,
            uint64_t va1, uint64_t scalar, uint16_t flags) {
  return Desc{.opcode = regs::kOpLaunch,
              .flags = flags,
              .seqno = seqno,
              .args = {regs::launch::arg0(context, kernel), count, va0, va1, scalar, 0}};
}

UniqueFd FakeQemu::connect_raw(const std::string& socket_path) {
  UniqueFd sock(check_sys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  check_sys(::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)),
            "connect");
  return sock;
}

Msg FakeQemu::recv_msg(int sock, int timeout_ms) {
  expect(poll_in(sock, timeout_ms), "timed out waiting for a message");
  Msg msg;
  iovec iov{.iov_base = &msg.value, .iov_len = sizeof(msg.value)};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 4)> control{};
  msghdr hdr{};
  hdr.msg_iov = &iov;
  hdr.msg_iovlen = 1;
  hdr.msg_control = control.data();
  hdr.msg_controllen = control.size();
  const ssize_t n = ::recvmsg(sock, &hdr, MSG_CMSG_CLOEXEC);
  expect(n == sizeof(msg.value), "short message or EOF");
  expect((hdr.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) == 0, "truncated message");
  for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(&hdr, c)) {
    expect(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS, "unexpected cmsg");
    expect(c->cmsg_len == CMSG_LEN(sizeof(int)), "more than one fd in a message");
    expect(!msg.fd.valid(), "two fd cmsgs in a message");
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof(fd));
    msg.fd.reset(fd);
  }
  return msg;
}

bool FakeQemu::closed_without_data(int sock, int timeout_ms) {
  if (!poll_in(sock, timeout_ms)) {
    return false;
  }
  char byte = 0;
  return ::recv(sock, &byte, 1, MSG_DONTWAIT) == 0;
}

std::unique_ptr<FakeQemu> FakeQemu::connect(const std::string& socket_path, uint32_t vectors) {
  std::unique_ptr<FakeQemu> q(new FakeQemu());
  q->sock_ = connect_raw(socket_path);
  const int sock = q->sock_.get();
  Msg version = recv_msg(sock);
  expect(version.value == 0 && !version.fd.valid(), "version 0 without fd first");
  Msg id = recv_msg(sock);
  expect(id.value >= 0 && id.value <= 0xffff && !id.fd.valid(), "client id second");
  q->peer_id_ = id.value;
  Msg shm = recv_msg(sock);
  expect(shm.value == -1 && shm.fd.valid(), "-1 with the shm fd third");
  struct stat st {};
  check_sys(::fstat(shm.fd.get(), &st), "fstat shm");
  q->shm_fd_ = std::move(shm.fd);
  q->shm_ = Mapping(q->shm_fd_.get(), static_cast<size_t>(st.st_size));
  q->page_ = SharedPage(q->shm_.data(), q->shm_.size());
  for (uint32_t v = 0; v < vectors; ++v) {
    Msg msg = recv_msg(sock);
    expect(msg.value == regs::kDoorbellPeer && msg.fd.valid(), "device peer id with eventfd");
    q->doorbells_.push_back(std::move(msg.fd));
  }
  for (uint32_t v = 0; v < vectors; ++v) {
    Msg msg = recv_msg(sock);
    expect(msg.value == q->peer_id_ && msg.fd.valid(), "own peer id with eventfd");
    q->irqs_.push_back(std::move(msg.fd));
  }
  expect(!poll_in(sock, 50), "no message after the last vector");
  q->heads_.assign(regs::kMaxQueues, 0);
  return q;
}

uint32_t FakeQemu::reg32(uint32_t off) const {
  return page_.load32(off, std::memory_order_acquire);
}
uint64_t FakeQemu::reg64(uint32_t off) const {
  return page_.load64(off, std::memory_order_acquire);
}
void FakeQemu::set_reg32(uint32_t off, uint32_t value) const {
  page_.store32(off, value, std::memory_order_release);
}
void FakeQemu::set_reg64(uint32_t off, uint64_t value) const {
  page_.store64(off, value, std::memory_order_release);
}
uint32_t FakeQemu::qreg32(uint32_t queue, uint32_t field) const {
  return reg32(regs::queue_reg(queue, field));
}
uint64_t FakeQemu::fence(uint32_t queue) const {
  return reg64(regs::queue_reg(queue, regs::qreg::kFence));
}

void FakeQemu::ring(uint32_t vector) const { signal_eventfd(doorbells_.at(vector).get()); }

bool FakeQemu::wait_irq(uint32_t vector, int timeout_ms) const {
  const int fd = irqs_.at(vector).get();
  return poll_in(fd, timeout_ms) && drain_eventfd(fd) != 0;
}

void FakeQemu::write_desc(uint32_t queue, uint32_t index, const Desc& desc) const {
  const uint32_t entries = qreg32(queue, regs::qreg::kRingEntries);
  const uint32_t off =
      qreg32(queue, regs::qreg::kRingOffset) + (index & (entries - 1)) * regs::kDescSize;
  const uint64_t word0 = desc.opcode | (uint64_t{desc.flags} << 16U);
  page_.store64(off, word0, std::memory_order_relaxed);  // also clears STATUS
  page_.store64(off + regs::desc::kSeqno, desc.seqno, std::memory_order_relaxed);
  for (uint32_t i = 0; i < regs::kDescArgs; ++i) {
    page_.store64(off + regs::desc::kArg0 + 8 * i, desc.args.at(i), std::memory_order_relaxed);
  }
}

uint32_t FakeQemu::desc_status(uint32_t queue, uint32_t index) const {
  const uint32_t entries = qreg32(queue, regs::qreg::kRingEntries);
  const uint32_t off =
      qreg32(queue, regs::qreg::kRingOffset) + (index & (entries - 1)) * regs::kDescSize;
  return reg32(off + regs::desc::kStatus);
}

uint64_t FakeQemu::desc_arg(uint32_t queue, uint32_t index, uint32_t arg) const {
  const uint32_t entries = qreg32(queue, regs::qreg::kRingEntries);
  const uint32_t off =
      qreg32(queue, regs::qreg::kRingOffset) + (index & (entries - 1)) * regs::kDescSize;
  return reg64(off + regs::desc::kArg0 + 8 * arg);
}

uint32_t FakeQemu::submit(uint32_t queue, const std::vector<Desc>& descs) {
  uint32_t& head = heads_.at(queue);
  for (const Desc& desc : descs) {
    write_desc(queue, head++, desc);
  }
  // Release: the descriptors are visible before the new HEAD.
  set_reg32(regs::queue_reg(queue, regs::qreg::kHead), head);
  ring(queue);
  return head;
}

bool FakeQemu::wait_tail(uint32_t queue, uint32_t tail, int timeout_ms) const {
  return wait_reg32(regs::queue_reg(queue, regs::qreg::kTail), tail, timeout_ms);
}

bool FakeQemu::wait_reg32(uint32_t off, uint32_t value, int timeout_ms) const {
  return wait_until([&] { return reg32(off) == value; }, timeout_ms);
}

bool FakeQemu::control(uint32_t bits) {
  set_reg32(regs::reg::kControl, bits);
  control_seq_ = reg32(regs::reg::kControlAck) + 1;
  set_reg32(regs::reg::kControlSeq, control_seq_);  // release: CONTROL first
  ring(0);
  const bool acked = wait_reg32(regs::reg::kControlAck, control_seq_);
  if (acked && (bits & regs::kControlReset) != 0) {
    heads_.assign(regs::kMaxQueues, 0);
  }
  return acked;
}

TestRig::TestRig(const Options& options) {
  const std::filesystem::path parent = options.parent_dir.empty()
                                           ? std::filesystem::temp_directory_path()
                                           : std::filesystem::path(options.parent_dir);
  std::string templ = (parent / "hmmgpu-emu-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp");
  }
  dir_ = templ;
  const std::string ram_path = dir_ + "/ram";
  ram_fd_.reset(::open(ram_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!ram_fd_.valid() || ::ftruncate(ram_fd_.get(), static_cast<off_t>(options.ram_size)) != 0) {
    throw std::system_error(errno, std::generic_category(), ram_path);  // sparse otherwise
  }
  if (options.control_file) {
    control_ = dir_ + "/control";  // missing: the device creates it
  }
  emu_.emplace(Config{.socket_dir = dir_,
                      .guest_ram = ram_path,
                      .guest_ram_size = options.ram_size,
                      .gpus = options.gpus,
                      .vram_size = options.vram_size,
                      .channels = options.channels,
                      .compute = options.compute,
                      .contexts = options.contexts,
                      .vectors = options.vectors,
                      .verbose = false,
                      .crash_after_doorbells = 0,
                      .control_file = control_,
                      .copy_floor = options.copy_floor});
}

TestRig::~TestRig() {
  emu_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace hmmgpu::test
