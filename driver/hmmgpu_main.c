// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: module entry points and parameters
 */

#include <linux/log2.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/printk.h>
#include <linux/sizes.h>

#include "hmmgpu_drv.h"

#define HMMGPU_VERSION			"0.1.0"
#define HMMGPU_FENCE_TIMEOUT_MAX_MS	600000U

unsigned int hmmgpu_fence_timeout_ms = 5000;
module_param_named(fence_timeout_ms, hmmgpu_fence_timeout_ms, uint, 0644);
MODULE_PARM_DESC(fence_timeout_ms,
		 "Time a queue may go without progress, unless it runs a kernel launch, before its device is declared hung, in ms; writable at run time (default 5000)");

unsigned int hmmgpu_sysram_devices;
module_param_named(sysram_devices, hmmgpu_sysram_devices, uint, 0444);
MODULE_PARM_DESC(sysram_devices,
		 "Number of devices backed by system RAM to create at load (default 0)");

unsigned int hmmgpu_sysram_vram_mb = 64;
module_param_named(sysram_vram_mb, hmmgpu_sysram_vram_mb, uint, 0444);
MODULE_PARM_DESC(sysram_vram_mb,
		 "VRAM of each sysram device in MiB, a multiple of 2 (default 64)");

unsigned int hmmgpu_sysram_channels = 2;
module_param_named(sysram_channels, hmmgpu_sysram_channels, uint, 0444);
MODULE_PARM_DESC(sysram_channels,
		 "Copy-engine channels of each sysram device, 0..31 (default 2)");

unsigned int hmmgpu_fault_around_pages = 16;
module_param_named(fault_around_pages, hmmgpu_fault_around_pages, uint, 0644);
MODULE_PARM_DESC(fault_around_pages,
		 "Pages migrated back to system memory with a CPU fault on VRAM: the aligned window a fault starts with, a power of two up to 512; 0 or 1 only the faulting page, also when sequential (default 16 = 64 KiB)");

unsigned int hmmgpu_fault_around_max_pages = 512;
module_param_named(fault_around_max_pages, hmmgpu_fault_around_max_pages, uint, 0644);
MODULE_PARM_DESC(fault_around_max_pages,
		 "Largest fault-around window, reached while a process faults in order (doubling) or densely (prefetch_threshold): a power of two up to 512; at most fault_around_pages turns the growth off (default 512 = 2 MiB)");

bool hmmgpu_fault_migrate = true;
module_param_named(fault_migrate, hmmgpu_fault_migrate, bool, 0644);
MODULE_PARM_DESC(fault_migrate,
		 "Device faults move the pages to the faulting device's VRAM (first touch); off: map them where they lie (default: on)");

unsigned int hmmgpu_prefetch_threshold = 50;
module_param_named(prefetch_threshold, hmmgpu_prefetch_threshold, uint, 0644);
MODULE_PARM_DESC(prefetch_threshold,
		 "Device faults also move and map the rest of the largest aligned subregion of their 2 MiB region of which at least this percentage is resident or faulting; 0 turns prefetching off (default 50)");

unsigned int hmmgpu_thrash_threshold = 3;
module_param_named(thrash_threshold, hmmgpu_thrash_threshold, uint, 0644);
MODULE_PARM_DESC(thrash_threshold,
		 "Quick rounds (a migration away within thrash_lapse_ms of arriving) in a row after which a device maps a page remotely instead of moving it; 0 turns thrashing detection off (default 3)");

unsigned int hmmgpu_thrash_lapse_ms = 50;
module_param_named(thrash_lapse_ms, hmmgpu_thrash_lapse_ms, uint, 0644);
MODULE_PARM_DESC(thrash_lapse_ms,
		 "A page taken from a device's VRAM within this many ms of arriving there made a quick round (default 50)");

unsigned int hmmgpu_thrash_pin_ms = 1000;
module_param_named(thrash_pin_ms, hmmgpu_thrash_pin_ms, uint, 0644);
MODULE_PARM_DESC(thrash_pin_ms,
		 "How long a thrashing page is mapped remotely instead of moved (default 1000)");

unsigned int hmmgpu_emu_fault_entries = 1024;
module_param_named(emu_fault_entries, hmmgpu_emu_fault_entries, uint, 0444);
MODULE_PARM_DESC(emu_fault_entries,
		 "Entries of an emulated GPU's replayable fault buffer, a power of two up to 65536; a full buffer drops faults, which come back after a replay (default 1024)");

static bool hmmgpu_params_valid(void)
{
	if (hmmgpu_fence_timeout_ms < 1 ||
	    hmmgpu_fence_timeout_ms > HMMGPU_FENCE_TIMEOUT_MAX_MS) {
		pr_err("fence_timeout_ms must be 1..%u\n",
		       HMMGPU_FENCE_TIMEOUT_MAX_MS);
		return false;
	}
	if (hmmgpu_sysram_devices > HMMGPU_MAX_DEVICES) {
		pr_err("sysram_devices must be at most %u\n", HMMGPU_MAX_DEVICES);
		return false;
	}
	if (!hmmgpu_sysram_vram_mb || hmmgpu_sysram_vram_mb % 2 ||
	    hmmgpu_sysram_vram_mb > SZ_1M) {
		pr_err("sysram_vram_mb must be an even number of MiB, 2..%u\n",
		       SZ_1M);
		return false;
	}
	if (hmmgpu_sysram_channels >= HMMGPU_MAX_QUEUES) {
		pr_err("sysram_channels must be 0..%u\n", HMMGPU_MAX_QUEUES - 1);
		return false;
	}
	if (!is_power_of_2(hmmgpu_emu_fault_entries) ||
	    hmmgpu_emu_fault_entries > HMMGPU_EMU_FAULT_ENTRIES_MAX) {
		pr_err("emu_fault_entries must be a power of two up to %u\n",
		       HMMGPU_EMU_FAULT_ENTRIES_MAX);
		return false;
	}
	return true;
}

static int __init hmmgpu_init(void)
{
	int ret;

	if (!hmmgpu_params_valid())
		return -EINVAL;

	ret = hmmgpu_core_init();
	if (ret)
		return ret;
	ret = hmmgpu_emu_init();
	if (ret)
		goto err_core_exit;
	ret = hmmgpu_sysram_init();
	if (ret)
		goto err_emu_exit;
	return 0;

err_emu_exit:
	hmmgpu_emu_exit();
err_core_exit:
	hmmgpu_core_exit();
	return ret;
}
module_init(hmmgpu_init);

static void __exit hmmgpu_exit(void)
{
	hmmgpu_sysram_exit();
	hmmgpu_emu_exit();
	hmmgpu_core_exit();
	/* The advice of processes is freed after an SRCU grace period. */
	mmu_notifier_synchronize();
}
module_exit(hmmgpu_exit);

MODULE_DESCRIPTION("hmmgpu: GPU memory manager over HMM, emulated and sysram devices");
MODULE_AUTHOR("The hmmgpu authors");
MODULE_LICENSE("GPL");
MODULE_VERSION(HMMGPU_VERSION);
