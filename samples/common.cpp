// SPDX-License-Identifier: GPL-2.0
#include "common.hpp"

#include <array>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <string_view>
#include <system_error>

namespace samples {

int run(const char* name, const char* usage, int argc, char** argv,
        const std::function<int(std::span<char* const> args)>& body) {
  const std::span<char* const> args(argv + 1, static_cast<std::size_t>(argc > 0 ? argc - 1 : 0));
  for (const char* a : args) {
    if (std::strcmp(a, "-h") == 0 || std::strcmp(a, "--help") == 0) {
      std::fputs(usage, stdout);
      return 0;
    }
  }
  try {
    return body(args);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "%s: %s\n%s", name, e.what(), usage);
    return kExitUsage;
  } catch (const skip& e) {
    std::printf("%s: skipped: %s\n", name, e.what());
    return kExitSkip;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return kExitWrong;
  }
}

std::vector<uvm::device> open_compute_devices(std::size_t at_least) {
  const auto all = uvm::list_devices();
  std::vector<uvm::device> out;
  for (const auto& s : all) {
    if (!out.empty() && s.provider() != out.front().properties().provider()) {
      break;  // one provider: the first's
    }
    uvm::device d(s);
    if (d.supports(uvm::capability::compute)) {
      out.push_back(std::move(d));
    }
  }
  if (out.size() < at_least) {
    const bool cuda = !out.empty() && out.front().properties().provider() == uvm::provider::cuda;
    throw skip("needs " + std::to_string(at_least) + (cuda ? " CUDA" : " hmmgpu") +
               " device(s) that run kernels, found " + std::to_string(out.size()) +
               (all.empty()
                    ? " (no device at all: " + uvm::provider_status(uvm::provider::hmmgpu).reason +
                          "; " + uvm::provider_status(uvm::provider::cuda).reason + ")"
                    : ""));
  }
  return out;
}

bool has_counters(const uvm::device& dev) { return dev.properties().reports("to_device_pages"); }

std::size_t size_arg(std::span<char* const> args, std::size_t i, std::size_t fallback,
                     std::size_t min) {
  if (i >= args.size()) {
    return fallback;
  }
  const std::string_view s(args[i]);
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  const std::string_view suffix(end, static_cast<std::size_t>(s.data() + s.size() - end));
  unsigned shift = 0;
  if (suffix == "K" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M") {
    shift = 20;
  } else if (suffix == "G") {
    shift = 30;
  } else if (!suffix.empty()) {
    throw usage_error("not a number: " + std::string(s));
  }
  if (ec != std::errc{} || n < min || n > (std::numeric_limits<std::size_t>::max() >> shift)) {
    throw usage_error("not a number of at least " + std::to_string(min) + ": " + std::string(s));
  }
  return n << shift;
}

std::string bytes(std::uint64_t n) {
  static constexpr std::array<const char*, 4> kUnits{"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) {
    return std::to_string(n) + " B";
  }
  auto v = static_cast<double>(n) / 1024;
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < kUnits.size()) {
    v /= 1024;
    u++;
  }
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%.1f %s", v, kUnits.at(u));
  return buf.data();
}

double ms(std::chrono::nanoseconds t) {
  return std::chrono::duration<double, std::milli>(t).count();
}

std::chrono::nanoseconds copy_engine_time(const uvm::device_counters& c) {
  std::chrono::nanoseconds total{0};
  for (auto t : c.channel_busy) {
    total += t;
  }
  return total;
}

void print_counters(const uvm::device& dev, const uvm::device_counters& delta) {
  using C = uvm::device_counters;
  struct field {
    const char* name;
    std::uint64_t C::*count;
    std::uint64_t C::*bytes;  // the count in bytes, or null
  };
  static constexpr auto kFields = std::to_array<field>({
      {"to_device_pages", &C::to_device_pages, &C::to_device_bytes},
      {"to_system_pages", &C::to_system_pages, &C::to_system_bytes},
      {"peer_to_device_pages", &C::peer_to_device_pages, &C::peer_to_device_bytes},
      {"cpu_faults", &C::cpu_faults, nullptr},
      {"fault_around_pages", &C::fault_around_pages, nullptr},
      {"device_faults", &C::device_faults, nullptr},
      {"fault_batches", &C::fault_batches, nullptr},
      {"fault_duplicates", &C::fault_duplicates, nullptr},
      {"fault_replays", &C::fault_replays, nullptr},
      {"fault_cancels", &C::fault_cancels, nullptr},
      {"prefetched_pages", &C::prefetched_pages, nullptr},
      {"remote_mapped_pages", &C::remote_mapped_pages, nullptr},
      {"thrashing_events", &C::thrashing_events, nullptr},
      {"evicted_chunks", &C::evicted_chunks, nullptr},
      {"evicted_pages", &C::evicted_pages, &C::evicted_bytes},
      {"copy_batches", &C::copy_batches, nullptr},
      {"copy_errors", &C::copy_errors, nullptr},
      {"vram_alloc_failures", &C::vram_alloc_failures, nullptr},
      {"tlb_invalidates", &C::tlb_invalidates, nullptr},
  });
  const uvm::device_properties& props = dev.properties();
  std::printf("%s counters that moved:\n", uvm::to_string(uvm::location(dev)).c_str());
  bool any = false;
  for (const auto& f : kFields) {
    if (delta.*f.count == 0 || !props.reports(f.name)) {
      continue;
    }
    any = true;
    std::printf("  %-22s %10llu", f.name, static_cast<unsigned long long>(delta.*f.count));
    if (f.bytes != nullptr) {
      std::printf("  (%s)", bytes(delta.*f.bytes).c_str());
    }
    std::printf("\n");
  }
  const auto busy = copy_engine_time(delta);
  if (busy.count() != 0) {
    any = true;
    std::printf("  %-22s %10.3f ms over %zu channels\n", "copy engine busy", ms(busy),
                delta.channel_busy.size());
  }
  if (!any) {
    std::printf("  (none)\n");
  }
  if (!props.unavailable_counters.empty()) {
    std::string names;
    for (const auto& n : props.unavailable_counters) {
      names += (names.empty() ? "" : ", ") + n;
    }
    std::printf("  unavailable on this device (%s): %s\n",
                props.provider() == uvm::provider::cuda ? "the CUDA runtime exposes none"
                                                        : "the driver predates them",
                names.c_str());
  }
}

}  // namespace samples
