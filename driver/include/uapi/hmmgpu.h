/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * hmmgpu - user-space interface of the hmmgpu driver.
 *
 * This header is the only contract between the kernel module and user
 * space. Every structure has fixed-width fields, explicit padding and
 * reserved words; reserved words and flag bits that are not defined must be
 * zero on input (the driver rejects anything else with -EINVAL) and are
 * returned as zero.
 *
 * Each device is a character device /dev/hmmgpuN (mode 0666) with
 * attributes in /sys/class/hmmgpu/hmmgpuN/: name, backend ("emu" or
 * "sysram"), vram_total and vram_used (bytes), channels, and state
 * ("ready", "halted", "lost"). N is the lowest free number when the device
 * is probed: at module load the emulated GPUs come first (in PCI order),
 * then the sysram devices; tell them apart by backend, not by N.
 *
 * Errors common to every ioctl:
 *   -ENOTTY  unknown ioctl number
 *   -EFAULT  the argument pointer is not readable or writable
 *   -EINVAL  a reserved word or an undefined flag bit is not zero, or a
 *            field is out of its documented range
 *   -ENODEV  the device was removed or has been lost; only close() remains
 */
#ifndef _UAPI_HMMGPU_H
#define _UAPI_HMMGPU_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

#define HMMGPU_UAPI_VERSION_MAJOR 1
#define HMMGPU_UAPI_VERSION_MINOR 0
#define HMMGPU_UAPI_VERSION \
	((HMMGPU_UAPI_VERSION_MAJOR << 16) | HMMGPU_UAPI_VERSION_MINOR)

#define HMMGPU_IOCTL_MAGIC 0xC6

/**
 * enum hmmgpu_backend - what implements a device
 * @HMMGPU_BACKEND_EMU: the emulated PCI GPU (hmmgpu-emu, see emu/SPEC.md)
 * @HMMGPU_BACKEND_SYSRAM: VRAM carved from system RAM, copies by a kernel
 *	worker; for machines without the emulator
 */
enum hmmgpu_backend {
	HMMGPU_BACKEND_EMU = 1,
	HMMGPU_BACKEND_SYSRAM = 2,
};

/* Capability bits of struct hmmgpu_info.caps. */
#define HMMGPU_CAP_NOP		_BITUL(0)	/* HMMGPU_IOCTL_NOP */

#define HMMGPU_NAME_LEN 32

/**
 * struct hmmgpu_info - HMMGPU_IOCTL_GET_INFO result (all fields output)
 * @uapi_version: HMMGPU_UAPI_VERSION of the running driver
 * @backend: enum hmmgpu_backend
 * @hw_version: the device's VERSION register (emu), 0 for sysram
 * @caps: HMMGPU_CAP_* bits
 * @vram_size: bytes of device memory
 * @num_channels: copy-engine channels
 * @num_queues: command queues (control queue 0 plus the channels)
 * @index: N of /dev/hmmgpuN
 * @pad: zero
 * @name: NUL-terminated device name
 * @reserved: zero
 */
struct hmmgpu_info {
	__u32 uapi_version;
	__u32 backend;
	__u32 hw_version;
	__u32 caps;
	__u64 vram_size;
	__u32 num_channels;
	__u32 num_queues;
	__u32 index;
	__u32 pad;
	char name[HMMGPU_NAME_LEN];
	__u64 reserved[8];
};

#define HMMGPU_NOP_MAX 4096

/**
 * struct hmmgpu_nop - HMMGPU_IOCTL_NOP argument
 * @flags: in, must be 0
 * @count: in, NOP commands to submit back to back, 1..HMMGPU_NOP_MAX;
 *	only the last asks for a completion interrupt
 * @queue: in, queue to submit on, < hmmgpu_info.num_queues
 * @pad: in, must be 0
 * @elapsed_ns: out, time from ringing the first doorbell to the completion
 *	interrupt of the last NOP, as seen by the driver (for sysram, the
 *	worker's completion stands in for the interrupt)
 * @reserved: in, must be 0
 *
 * Submits @count NOPs and sleeps until the last one has completed.
 *
 * Errors: -EINVAL (see above); -ETIMEDOUT the device did not complete the
 * NOPs within the driver's fence timeout (a hung device; the device is
 * halted afterwards); -EIO the device reported an error or has halted;
 * -EINTR a signal arrived while waiting (the NOPs still complete).
 */
struct hmmgpu_nop {
	__u32 flags;
	__u32 count;
	__u32 queue;
	__u32 pad;
	__u64 elapsed_ns;
	__u64 reserved[4];
};

#define HMMGPU_IOCTL_GET_INFO	_IOR(HMMGPU_IOCTL_MAGIC, 0x00, struct hmmgpu_info)
#define HMMGPU_IOCTL_NOP	_IOWR(HMMGPU_IOCTL_MAGIC, 0x01, struct hmmgpu_nop)

#endif /* _UAPI_HMMGPU_H */
