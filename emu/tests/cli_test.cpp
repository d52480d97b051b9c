// SPDX-License-Identifier: GPL-2.0
// The command line: parsing in process, and the built hmmgpu-emu executable's contract (ready
// line, exit codes, signals, fault injection).
#include "cli.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fake_qemu.h"

namespace hmmgpu::test {
namespace {

// Sizes take K/M/G suffixes and refuse garbage and overflow.
TEST(Cli, ParseSize) {
  EXPECT_EQ(parse_size("4096"), 4096U);
  EXPECT_EQ(parse_size("64K"), 64U << 10);
  EXPECT_EQ(parse_size("256M"), 256U << 20);
  EXPECT_EQ(parse_size("3G"), 3ULL << 30);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("M"));
  EXPECT_FALSE(parse_size("12X"));
  EXPECT_FALSE(parse_size("-1"));
  EXPECT_FALSE(parse_size("1.5G"));
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("17179869184G"));
}

CliResult parse(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--socket-dir",     "/tmp", "--guest-ram", "/tmp/ram",
                                   "--guest-ram-size", "1G"};
  args.insert(args.end(), extra.begin(), extra.end());
  return parse_cli(args);
}

// Defaults follow SPEC 8; every option is parsed.
TEST(Cli, DefaultsAndOptions) {
  const CliResult defaults = parse({});
  ASSERT_TRUE(std::holds_alternative<Config>(defaults));
  const auto& d = std::get<Config>(defaults);
  EXPECT_EQ(d.gpus, 2U);
  EXPECT_EQ(d.vram_size, 256ULL << 20);
  EXPECT_EQ(d.channels, 2U);
  EXPECT_EQ(d.compute, 2U);
  EXPECT_EQ(d.contexts, 64U);
  EXPECT_EQ(d.vectors, 8U);
  EXPECT_FALSE(d.verbose);
  EXPECT_EQ(d.crash_after_doorbells, 0U);
  const CliResult all =
      parse({"--gpus", "3", "--vram", "64M", "--channels", "4", "--compute", "1", "--contexts",
             "4096", "--vectors", "7", "--verbose", "--crash-after-doorbells", "7"});
  ASSERT_TRUE(std::holds_alternative<Config>(all));
  const auto& c = std::get<Config>(all);
  EXPECT_EQ(c.gpus, 3U);
  EXPECT_EQ(c.vram_size, 64ULL << 20);
  EXPECT_EQ(c.channels, 4U);
  EXPECT_EQ(c.compute, 1U);
  EXPECT_EQ(c.contexts, 4096U);
  EXPECT_EQ(c.vectors, 7U);
  EXPECT_TRUE(c.verbose);
  EXPECT_EQ(c.crash_after_doorbells, 7U);
  EXPECT_EQ(c.guest_ram_size, 1ULL << 30);
}

// Options also take their value GNU-style, as --option=VALUE.
TEST(Cli, EqualsForm) {
  const CliResult r = parse({"--gpus=3", "--vram=64M", "--crash-after-doorbells=9"});
  ASSERT_TRUE(std::holds_alternative<Config>(r));
  const auto& c = std::get<Config>(r);
  EXPECT_EQ(c.gpus, 3U);
  EXPECT_EQ(c.vram_size, 64ULL << 20);
  EXPECT_EQ(c.crash_after_doorbells, 9U);
  EXPECT_TRUE(std::holds_alternative<CliError>(parse({"--gpus="})));
  EXPECT_TRUE(std::holds_alternative<CliError>(parse({"--bogus=1"})));
  EXPECT_TRUE(std::holds_alternative<CliError>(parse({"--verbose=1"})));
}

// --control FILE (SPEC 8.1) is optional and takes a non-empty path, in both forms.
TEST(Cli, ControlOption) {
  const CliResult none = parse({});
  ASSERT_TRUE(std::holds_alternative<Config>(none));
  EXPECT_EQ(std::get<Config>(none).control_file, "");
  const CliResult spaced = parse({"--control", "/tmp/ctl"});
  ASSERT_TRUE(std::holds_alternative<Config>(spaced));
  EXPECT_EQ(std::get<Config>(spaced).control_file, "/tmp/ctl");
  const CliResult equals = parse({"--control=/tmp/x"});
  ASSERT_TRUE(std::holds_alternative<Config>(equals));
  EXPECT_EQ(std::get<Config>(equals).control_file, "/tmp/x");
  EXPECT_TRUE(std::holds_alternative<CliError>(parse({"--control="})));
  EXPECT_TRUE(std::holds_alternative<CliError>(parse({"--control"})));
  EXPECT_NE(std::string(usage()).find("--control FILE"), std::string::npos);
}

// --copy-floor (SPEC 8.2) is off by default and a flag without a value.
TEST(Cli, CopyFloorOption) {
  const CliResult none = parse({});
  ASSERT_TRUE(std::holds_alternative<Config>(none));
  EXPECT_FALSE(std::get<Config>(none).copy_floor);
  const CliResult on = parse({"--copy-floor"});
  ASSERT_TRUE(std::holds_alternative<Config>(on));
  EXPECT_TRUE(std::get<Config>(on).copy_floor);
  EXPECT_TRUE(std::holds_alternative<CliError>(parse({"--copy-floor=1"})));
  EXPECT_NE(std::string(usage()).find("--copy-floor"), std::string::npos);
}

// Invalid command lines are errors.
TEST(Cli, Errors) {
  for (const std::vector<std::string>& extra :
       std::vector<std::vector<std::string>>{{"--bogus"},
                                             {"--gpus"},
                                             {"--gpus", "0"},
                                             {"--gpus", "x"},
                                             {"--vram", "3M"},
                                             {"--vectors", "2"},
                                             {"--channels", "8"},
                                             {"--channels", "32", "--vectors", "64"},
                                             {"--vectors", "0"},
                                             {"--crash-after-doorbells", "0"}}) {
    EXPECT_TRUE(std::holds_alternative<CliError>(parse(extra))) << extra[0];
  }
  EXPECT_TRUE(std::holds_alternative<CliError>(parse_cli({"--socket-dir", "/tmp"})));
  EXPECT_TRUE(std::holds_alternative<CliHelp>(parse_cli({"--help"})));
}

// SPEC 8 (1.2): the vectors cover every queue and FAULT_VECTOR; the defaults need 6 of the 8.
TEST(Cli, VectorsCoverQueuesAndFaultVector) {
  EXPECT_TRUE(std::holds_alternative<Config>(parse({"--vectors", "6"})));
  EXPECT_TRUE(std::holds_alternative<Config>(
      parse({"--channels", "0", "--compute", "0", "--vectors", "2"})));
  EXPECT_TRUE(std::holds_alternative<Config>(
      parse({"--channels", "15", "--compute", "16", "--vectors", "33"})));  // 32 queues
  const CliResult small = parse({"--compute", "3", "--vectors", "6"});
  ASSERT_TRUE(std::holds_alternative<CliError>(small));
  EXPECT_NE(std::get<CliError>(small).message.find("fault vector"), std::string::npos);
  const CliResult many = parse({"--channels", "16", "--compute", "16", "--vectors", "64"});
  ASSERT_TRUE(std::holds_alternative<CliError>(many));
  EXPECT_NE(std::get<CliError>(many).message.find("at most 31"), std::string::npos);
  for (const std::vector<std::string>& extra :
       std::vector<std::vector<std::string>>{{"--vectors", "5"},  // 2 + 2 + 2 needed
                                             {"--compute", "5"},  // 1 + 2 + 5 + 1 > 8
                                             {"--compute", "32", "--vectors", "64"},
                                             {"--compute", "-1"},
                                             {"--compute", "x"},
                                             {"--contexts", "0"},
                                             {"--contexts", "4097"}}) {
    EXPECT_TRUE(std::holds_alternative<CliError>(parse(extra))) << extra[0] << " " << extra[1];
  }
  EXPECT_NE(std::string(usage()).find("--compute N"), std::string::npos);
  EXPECT_NE(std::string(usage()).find("--contexts N"), std::string::npos);
}

// A running hmmgpu-emu child with its stdout on a pipe.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    std::array<int, 2> out{};
    if (::pipe2(out.data(), O_CLOEXEC) != 0) {
      throw std::system_error(errno, std::generic_category(), "pipe");
    }
    stdout_.reset(out[0]);
    UniqueFd write_end(out[1]);
    std::vector<std::string> argv_storage = {HMMGPU_EMU_BINARY};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(argv_storage.size() + 1);
    for (std::string& arg : argv_storage) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const rlimit no_core{0, 0};
      ::setrlimit(RLIMIT_CORE, &no_core);  // the abort test must not dump core
      ::dup2(write_end.get(), STDOUT_FILENO);
      const int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&&) = delete;
  Child& operator=(Child&&) = delete;
  ~Child() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Everything the child printed on stdout until `timeout_ms` or EOF.
  std::string read_line(int timeout_ms = 5000) {
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (text.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{.fd = stdout_.get(), .events = POLLIN, .revents = 0};
      if (::poll(&pfd, 1, 100) == 1) {
        char c = 0;
        if (::read(stdout_.get(), &c, 1) != 1) {
          break;
        }
        text.push_back(c);
      }
    }
    return text;
  }

  // The wait status, or nullopt when the child is still running after `timeout_ms`.
  std::optional<int> wait(int timeout_ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!status_ && std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        status_ = status;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    return status_;
  }

  void kill(int sig) const { ::kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  UniqueFd stdout_;
  std::optional<int> status_;
};

class CliProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "hmmgpu-cli-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    ram_ = dir_ + "/ram";
    std::ofstream(ram_).put('\0');
    std::filesystem::resize_file(ram_, 64 << 20);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  [[nodiscard]] std::vector<std::string> args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> all = {"--socket-dir",     dir_,  "--guest-ram", ram_,
                                    "--guest-ram-size", "64M", "--vram",      "2M"};
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  }

  std::string dir_;
  std::string ram_;
};

bool exited_with(const std::optional<int>& status, int code) {
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == code;
}

// The executable prints "ready", serves every GPU's socket and exits 0 on SIGTERM and SIGINT,
// removing its sockets.
TEST_F(CliProcessTest, ReadyAndCleanShutdownOnSignals) {
  for (const int sig : {SIGTERM, SIGINT}) {
    Child child(args({"--gpus", "3"}));
    ASSERT_EQ(child.read_line(), "ready\n");
    for (int gpu = 0; gpu < 3; ++gpu) {
      const std::string path = dir_ + "/gpu" + std::to_string(gpu) + ".sock";
      std::unique_ptr<FakeQemu> q;
      ASSERT_NO_THROW(q = FakeQemu::connect(path, 8));
      EXPECT_EQ(q->reg32(regs::reg::kDeviceIndex), static_cast<uint32_t>(gpu));
    }
    child.kill(sig);
    EXPECT_TRUE(exited_with(child.wait(), 0)) << "signal " << sig;
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/gpu0.sock"));
  }
}

// A bad command line exits 2; --help exits 0.
TEST_F(CliProcessTest, BadCommandLineExits2) {
  Child bad(args({"--vectors", "2"}));
  EXPECT_TRUE(exited_with(bad.wait(), 2));
  Child unknown(args({"--frobnicate"}));
  EXPECT_TRUE(exited_with(unknown.wait(), 2));
  Child few_vectors(args({"--compute", "4"}));  // needs 2 + 2 + 4 = 8 vectors: fits exactly
  EXPECT_EQ(few_vectors.read_line(), "ready\n");
  Child too_few(args({"--compute", "5"}));  // needs 9 vectors, 8 by default
  EXPECT_TRUE(exited_with(too_few.wait(), 2));
  Child help({"--help"});
  EXPECT_NE(help.read_line().find("usage"), std::string::npos);
  EXPECT_TRUE(exited_with(help.wait(), 0));
}

// A missing or too small guest RAM file is a host error: exit 1, no ready line.
TEST_F(CliProcessTest, MissingGuestRamExits1) {
  Child missing({"--socket-dir", dir_, "--guest-ram", dir_ + "/nope", "--guest-ram-size", "64M"});
  EXPECT_TRUE(exited_with(missing.wait(), 1));
  Child small({"--socket-dir", dir_, "--guest-ram", ram_, "--guest-ram-size", "128M"});
  EXPECT_TRUE(exited_with(small.wait(), 1));
  EXPECT_EQ(small.read_line(100), "");
}

// --crash-after-doorbells N aborts on the N-th doorbell, counted over all GPUs.
TEST_F(CliProcessTest, CrashAfterDoorbellsAborts) {
  Child child(args({"--crash-after-doorbells", "2"}));
  ASSERT_EQ(child.read_line(), "ready\n");
  std::unique_ptr<FakeQemu> gpu0;
  std::unique_ptr<FakeQemu> gpu1;
  ASSERT_NO_THROW(gpu0 = FakeQemu::connect(dir_ + "/gpu0.sock", 8));
  ASSERT_NO_THROW(gpu1 = FakeQemu::connect(dir_ + "/gpu1.sock", 8));
  gpu0->submit(0, {nop(1)});
  ASSERT_TRUE(gpu0->wait_tail(0, 1));
  EXPECT_FALSE(child.wait(100)) << "aborted too early";
  gpu1->ring(1);
  const std::optional<int> status = child.wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGABRT);
}

// The control command exit ends the process at once with status 3; lines before it are acked.
TEST_F(CliProcessTest, ControlExitExits3) {
  const std::string control = dir_ + "/control";
  Child child(args({"--control", control}));
  ASSERT_EQ(child.read_line(), "ready\n");
  std::unique_ptr<FakeQemu> gpu0;
  ASSERT_NO_THROW(gpu0 = FakeQemu::connect(dir_ + "/gpu0.sock", 8));
  std::ofstream(control, std::ios::app) << "hang 1\n";
  EXPECT_FALSE(child.wait(100)) << "exited too early";
  std::ofstream(control, std::ios::app) << "exit\n";
  EXPECT_TRUE(exited_with(child.wait(), 3));
  std::ifstream ack(control + ".ack");
  std::string acked;
  std::getline(ack, acked);
  EXPECT_EQ(acked, "1");
  EXPECT_TRUE(FakeQemu::closed_without_data(gpu0->socket()));  // the device is gone
}

// A control file that cannot be created is a host error: exit 1.
TEST_F(CliProcessTest, UncreatableControlFileExits1) {
  Child child(args({"--control", dir_ + "/no/such/dir/control"}));
  EXPECT_TRUE(exited_with(child.wait(), 1));
}

}  // namespace
}  // namespace hmmgpu::test
