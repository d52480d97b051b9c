# SPDX-License-Identifier: GPL-2.0
#
# hmmgpu top-level make targets. Each one installs what it needs first.
#
#   make          build the emulator, tests and samples; the module too when
#                 the running kernel's headers are installed
#   make test     build the debug test kernel (cached), everything else, and
#                 run every test (host and VM); non-zero on any failure
#   make demo     build the fast kernel and run the vector_add sample in the VM
#   make soak     the stress scenarios of vm.stress, SOAK_SECONDS (600)
#                 each, under the debug kernel
#   make fuzz     the emulator's fuzzers, FUZZ_SECONDS (600) in all, growing
#                 the corpus kept in $(BUILD)/fuzz-corpus
#   make bench    build the fast kernel and measure (about 15 minutes; QUICK=1: a
#                 subset; BENCH_ARGS: more bench/run options): table, JSON and
#                 chart in $(BUILD)/bench-results
#   make deps     install the Debian packages the project needs
#   make kernel   build (or find in the cache) the FLAVOR test kernel
#   make module   build hmmgpu.ko against the FLAVOR test kernel
#   make clean    remove build/ (the kernel cache stays)

FLAVOR ?= debug
BUILD  ?= build
JOBS   ?= $(shell nproc)
CMAKE_BUILD_TYPE ?= RelWithDebInfo

KERNEL_DIR = $(shell vm/build-kernel --flavor $(FLAVOR) --quiet | tail -n 1)
HOST_KDIR ?= /lib/modules/$(shell uname -r)/build
MODULE_DIR = $(BUILD)/module-$(FLAVOR)

.PHONY: all deps bench-deps kernel build configure module module-host test demo soak fuzz bench clean

all: build module-host

deps:
	@scripts/install-deps

bench-deps:
	@scripts/install-deps bench

kernel: deps
	@vm/build-kernel --flavor $(FLAVOR) >/dev/null

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) \
		-DHMMGPU_VM_FLAVOR=$(FLAVOR)

configure: $(BUILD)/CMakeCache.txt
	cmake -S . -B $(BUILD) -DHMMGPU_VM_FLAVOR=$(FLAVOR) >/dev/null

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The module and the test-only modules, built out of tree in their own
# directory per flavor (a KASAN kernel needs its own build).
module: kernel
	@mkdir -p $(MODULE_DIR)
	@rsync -a --delete --exclude-from=driver/.gitignore driver/ $(MODULE_DIR)/hmmgpu/
	@rsync -a --delete tests/vm/bugmod/ $(MODULE_DIR)/bugmod/
	$(MAKE) -C $(KERNEL_DIR)/linux M=$(abspath $(MODULE_DIR)/hmmgpu) W=1 modules
	$(MAKE) -C $(KERNEL_DIR)/linux M=$(abspath $(MODULE_DIR)/bugmod) modules
	@cp $(MODULE_DIR)/hmmgpu/hmmgpu.ko $(MODULE_DIR)/bugmod/bugmod.ko $(MODULE_DIR)/

module-host:
	@if [ -d $(HOST_KDIR) ]; then \
		$(MAKE) -C driver KDIR=$(HOST_KDIR); \
	else \
		echo "note: no headers for the running kernel in $(HOST_KDIR);" \
		     "hmmgpu.ko is built against the test kernel by 'make test'"; \
	fi

test: deps kernel build module
	cd $(BUILD) && ctest --output-on-failure --timeout 1800

# vector_add on an emulated GPU in the VM (fast kernel): it verifies the sum
# and prints the counters that moved (migrations, faults, copy-engine time).
demo: FLAVOR = fast
demo: deps kernel build module
	vm/run --flavor fast --build-dir $(abspath $(BUILD)) -- $(BUILD)/samples/vector_add

# The same VM and parameters as vm.stress (tests/CMakeLists.txt), longer.
SOAK_SECONDS ?= 600
soak: FLAVOR = debug
soak: deps kernel build module
	vm/run --flavor debug --build-dir $(abspath $(BUILD)) --vram 16M \
		--timeout $$(( 8 * $(SOAK_SECONDS) + 600 )) \
		--hmmgpu-params "sysram_devices=1 sysram_vram_mb=16 emu_fault_entries=8" \
		-- env HMMGPU_STRESS_SECONDS=$(SOAK_SECONDS) \
		$(abspath $(BUILD))/tests/hmmgpu-stress-tests

# The fuzzers of emu.fuzz (emu/fuzz/run.sh), longer, on the host.
FUZZ_SECONDS ?= 600
fuzz: deps build
	emu/fuzz/run.sh --build-dir $(BUILD)/emu/fuzz --seconds $(FUZZ_SECONDS) \
		--corpus $(BUILD)/fuzz-corpus

bench: FLAVOR = fast
bench: bench-deps kernel build module
	bench/run --flavor fast --build-dir $(abspath $(BUILD)) \
		--out-dir $(abspath $(BUILD))/bench-results $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
	$(MAKE) -C driver clean 2>/dev/null || true
