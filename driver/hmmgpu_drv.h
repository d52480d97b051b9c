/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmmgpu: internal interfaces of the hmmgpu driver
 *
 * The core (hmmgpu_device.c, hmmgpu_queue.c) knows devices, queues, jobs
 * and fences. A backend (hmmgpu_emu.c, hmmgpu_sysram.c) knows one kind of
 * hardware and reaches the core only through the functions declared here;
 * the core reaches a backend only through its struct hmmgpu_backend_ops.
 */
#ifndef _HMMGPU_DRV_H
#define _HMMGPU_DRV_H

#include <linux/atomic.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/ktime.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>

#include <uapi/hmmgpu.h>

#define HMMGPU_MAX_DEVICES	64
#define HMMGPU_MAX_QUEUES	32

struct hmmgpu_device;
struct hmmgpu_queue;

/**
 * enum hmmgpu_state - life cycle of a device, as shown in sysfs "state"
 * @HMMGPU_STATE_READY: executes commands
 * @HMMGPU_STATE_HALTED: stopped by a fatal error or hung; commands fail
 *	with -EIO, information queries still work
 * @HMMGPU_STATE_LOST: the hardware stopped responding; ioctls fail with
 *	-ENODEV
 * @HMMGPU_STATE_REMOVED: unbound from its hardware; ioctls fail with
 *	-ENODEV
 *
 * The state only moves forward, in the order of the values.
 */
enum hmmgpu_state {
	HMMGPU_STATE_READY,
	HMMGPU_STATE_HALTED,
	HMMGPU_STATE_LOST,
	HMMGPU_STATE_REMOVED,
};

/**
 * enum hmmgpu_cmd_op - backend-neutral command operations
 * @HMMGPU_CMD_NOP: completes without doing anything
 *
 * The copy operation (VRAM <-> system memory) comes next.
 */
enum hmmgpu_cmd_op {
	HMMGPU_CMD_NOP,
};

/* struct hmmgpu_cmd.flags */
#define HMMGPU_CMD_IRQ		BIT(0)	/* signal the queue on completion */

/**
 * struct hmmgpu_cmd - one command for a queue, as the core builds it
 * @op: what to do
 * @flags: HMMGPU_CMD_* bits
 * @seqno: the queue's fence value once this command has completed;
 *	assigned by the core, strictly increasing per queue
 */
struct hmmgpu_cmd {
	enum hmmgpu_cmd_op op;
	u32 flags;
	u64 seqno;
};

/**
 * struct hmmgpu_job - a batch of commands submitted together to one queue
 * @first_seqno: seqno of the first command
 * @last_seqno: seqno of the last command, the one the job waits for
 * @submit_time: when the job's first doorbell was rung
 * @complete_time: when the completion of @last_seqno was signalled
 * @errors: the queue's error count before the job
 * @kicked: @submit_time is valid
 */
struct hmmgpu_job {
	u64 first_seqno;
	u64 last_seqno;
	ktime_t submit_time;
	ktime_t complete_time;
	u32 errors;
	bool kicked;
};

/**
 * struct hmmgpu_queue - an in-order command queue of a device
 * @hdev: the device
 * @index: queue number; 0 is the control queue, 1.. the copy channels
 * @priv: backend data for this queue
 * @lock: serialises jobs on this queue, from the first command to the
 *	completion wait (protects the fields below it)
 * @last_seqno: seqno of the last command written
 * @space: commands the backend can accept without waiting
 * @pending: commands written but not yet kicked
 * @irq_lock: protects @irq_fence and @irq_time; taken in hard IRQ context
 * @irq_fence: fence value seen by the last completion signal
 * @irq_time: when that signal arrived
 * @wq: waiters for @irq_fence or a change of the device state
 */
struct hmmgpu_queue {
	struct hmmgpu_device *hdev;
	unsigned int index;
	void *priv;

	struct mutex lock;		/* see above */
	u64 last_seqno;
	unsigned int space;
	unsigned int pending;

	spinlock_t irq_lock;		/* see above */
	u64 irq_fence;
	ktime_t irq_time;

	wait_queue_head_t wq;
};

/**
 * struct hmmgpu_backend_ops - what a backend provides to the core
 * @name: short backend name shown in sysfs "backend", e.g. "emu" (required)
 * @type: enum hmmgpu_backend value reported by GET_INFO (required)
 * @queue_space: return how many commands @q can accept now without
 *	overwriting commands the engine has not completed. Called with
 *	@q->lock held; may not sleep. (required)
 * @queue_write: write @cmd into the next free slot of @q without making it
 *	visible to the engine. The core guarantees a free slot (see
 *	@queue_space). Called with @q->lock held; may not sleep. (required)
 * @queue_kick: publish every command written since the last kick and
 *	notify the engine (a doorbell). Called with @q->lock held; may not
 *	sleep. (required)
 * @queue_fence: return the seqno of the last command @q has completed.
 *	Called in any context, including hard IRQ, with or without @q->lock.
 *	(required)
 * @queue_errors: return the number of commands of @q that completed with
 *	an error since the device was started; the core compares it before
 *	and after a job. Called with @q->lock held; may not sleep. (optional:
 *	without it commands never fail)
 * @check: report a fatal device error: 0 while the device runs, -EIO when
 *	it has halted. Called with or without locks; may not sleep. (optional)
 * @alive: tell whether the hardware still responds at all, after a
 *	completion timed out. Called without queue locks held; may sleep for
 *	a few hundred milliseconds. (optional: without it the device is
 *	assumed alive)
 *
 * A backend calls hmmgpu_queue_signal() when a command flagged
 * %HMMGPU_CMD_IRQ completes (from its interrupt handler or worker). The core
 * never calls an op after hmmgpu_device_unregister() has returned.
 */
struct hmmgpu_backend_ops {
	const char *name;
	enum hmmgpu_backend type;
	unsigned int (*queue_space)(struct hmmgpu_queue *q);
	void (*queue_write)(struct hmmgpu_queue *q,
			    const struct hmmgpu_cmd *cmd);
	void (*queue_kick)(struct hmmgpu_queue *q);
	u64 (*queue_fence)(struct hmmgpu_queue *q);
	u32 (*queue_errors)(struct hmmgpu_queue *q);
	int (*check)(struct hmmgpu_device *hdev);
	bool (*alive)(struct hmmgpu_device *hdev);
};

/**
 * struct hmmgpu_device - one GPU, whatever implements it
 * @dev: the class device /sys/class/hmmgpu/hmmgpuN; its reference count
 *	is the lifetime of this structure (open files hold one)
 * @cdev: the character device /dev/hmmgpuN
 * @ops: the backend
 * @priv: backend data; valid until hmmgpu_device_unregister() returns
 * @minor: N of hmmgpuN
 * @unplug_lock: held for read by every ioctl for its whole duration and
 *	for write by hmmgpu_device_unregister() to wait for them
 * @state: enum hmmgpu_state, only moves forward (hmmgpu_device_set_state())
 * @registered: the character device was added
 * @name: human readable name, NUL-terminated
 * @hw_version: hardware version register, 0 when there is none
 * @caps: HMMGPU_CAP_* bits
 * @vram_size: bytes of device memory
 * @num_channels: copy-engine channels, queues 1..@num_channels
 * @num_queues: 1 + @num_channels
 * @nop_ns: NOP round trip measured when the device was registered
 * @queues: @num_queues queues
 *
 * Everything from @name on is set by the backend between
 * hmmgpu_device_alloc() and hmmgpu_device_register() and constant after.
 */
struct hmmgpu_device {
	struct device dev;
	struct cdev cdev;
	const struct hmmgpu_backend_ops *ops;
	void *priv;
	int minor;

	struct rw_semaphore unplug_lock;
	atomic_t state;
	bool registered;

	char name[HMMGPU_NAME_LEN];
	u32 hw_version;
	u32 caps;
	u64 vram_size;
	unsigned int num_channels;
	unsigned int num_queues;
	u64 nop_ns;
	struct hmmgpu_queue *queues;
};

static inline struct hmmgpu_device *to_hmmgpu_device(struct device *dev)
{
	return container_of(dev, struct hmmgpu_device, dev);
}

/**
 * hmmgpu_queue_get() - queue @i of a device
 * @hdev: the device
 * @i: queue number, less than @hdev->num_queues
 *
 * Return: the queue.
 */
static inline struct hmmgpu_queue *hmmgpu_queue_get(struct hmmgpu_device *hdev,
						    unsigned int i)
{
	return &hdev->queues[i];
}

/* hmmgpu_main.c: module parameters */
extern unsigned int hmmgpu_fence_timeout_ms;
extern unsigned int hmmgpu_sysram_devices;
extern unsigned int hmmgpu_sysram_vram_mb;
extern unsigned int hmmgpu_sysram_channels;

/* hmmgpu_device.c */
int hmmgpu_core_init(void);
void hmmgpu_core_exit(void);
struct hmmgpu_device *hmmgpu_device_alloc(struct device *parent,
					  const struct hmmgpu_backend_ops *ops,
					  unsigned int num_channels);
void hmmgpu_device_put(struct hmmgpu_device *hdev);
int hmmgpu_device_register(struct hmmgpu_device *hdev);
void hmmgpu_device_unregister(struct hmmgpu_device *hdev);
enum hmmgpu_state hmmgpu_device_state(struct hmmgpu_device *hdev);
void hmmgpu_device_set_state(struct hmmgpu_device *hdev,
			     enum hmmgpu_state state);
int hmmgpu_device_usable(struct hmmgpu_device *hdev);

/* hmmgpu_queue.c */
void hmmgpu_queue_init(struct hmmgpu_queue *q, struct hmmgpu_device *hdev,
		       unsigned int index);
void hmmgpu_queue_signal(struct hmmgpu_queue *q);
int hmmgpu_queue_nop(struct hmmgpu_queue *q, unsigned int count,
		     u64 *elapsed_ns);

/* hmmgpu_emu.c */
int hmmgpu_emu_init(void);
void hmmgpu_emu_exit(void);

/* hmmgpu_sysram.c */
int hmmgpu_sysram_init(void);
void hmmgpu_sysram_exit(void);

#endif /* _HMMGPU_DRV_H */
