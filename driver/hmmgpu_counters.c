// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: event counters, their ioctl and debugfs files, and tracepoints
 */

/**
 * DOC: Counters
 *
 * Each device counts its migrations, CPU faults, copies, copy errors and
 * VRAM allocation failures in &hmmgpu_device.stats, and the busy time of
 * each copy channel in &hmmgpu_queue.busy_ns. The counters are atomics
 * updated where the events happen (hmmgpu_migrate.c, hmmgpu_queue.c,
 * hmmgpu_vram.c), without locks, and read here without stopping the
 * device. They are shown by HMMGPU_IOCTL_GET_COUNTERS and by the debugfs
 * file hmmgpu/hmmgpuN/counters, one "name value" line per counter, which
 * exists from hmmgpu_device_register() to hmmgpu_device_unregister().
 *
 * The tracepoints of hmmgpu_trace.h are created in this file: hmmgpu_migrate
 * per batch of HMMGPU_IOCTL_MIGRATE, hmmgpu_cpu_fault per CPU fault on
 * VRAM, and for the device fault service hmmgpu_device_fault per faulting
 * page of a batch, hmmgpu_fault_service per region serviced and
 * hmmgpu_device_map per run of pages mapped.
 */

/**
 * DOC: Locking
 *
 * None of its own: the counters are atomics. debugfs_remove_recursive()
 * waits for the readers of a device's files, so a reader never sees a
 * device whose unregister has returned.
 */

#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/uaccess.h>

#include "hmmgpu_drv.h"

#define CREATE_TRACE_POINTS
#include "hmmgpu_trace.h"

static_assert(HMMGPU_MAX_QUEUES - 1 <= HMMGPU_MAX_CHANNELS_UAPI);
static_assert(offsetofend(struct hmmgpu_counters, reserved) ==
	      HMMGPU_COUNTERS_SIZE_V1);

static struct dentry *hmmgpu_debugfs_root;

/* Fill the output fields of @c from the counters of @hdev. */
static void hmmgpu_device_counters(struct hmmgpu_device *hdev,
				   struct hmmgpu_counters *c)
{
	const struct hmmgpu_stats *s = &hdev->stats;
	unsigned int i;

	c->to_device_pages = atomic64_read(&s->to_device_pages);
	c->to_device_bytes = c->to_device_pages << PAGE_SHIFT;
	c->to_system_pages = atomic64_read(&s->to_system_pages);
	c->to_system_bytes = c->to_system_pages << PAGE_SHIFT;
	c->cpu_faults = atomic64_read(&s->cpu_faults);
	c->fault_around_pages = atomic64_read(&s->fault_around_pages);
	c->copy_batches = atomic64_read(&s->copy_batches);
	c->copy_errors = atomic64_read(&s->copy_errors);
	c->vram_alloc_failures = atomic64_read(&s->vram_alloc_failures);
	c->device_faults = atomic64_read(&s->faults);
	c->fault_replays = atomic64_read(&s->fault_replays);
	c->fault_cancels = atomic64_read(&s->fault_cancels);
	c->evicted_chunks = atomic64_read(&s->evicted_chunks);
	c->evicted_pages = atomic64_read(&s->evicted_pages);
	c->evicted_bytes = c->evicted_pages << PAGE_SHIFT;
	c->fault_batches = atomic64_read(&s->fault_batches);
	c->fault_duplicates = atomic64_read(&s->fault_duplicates);
	c->prefetched_pages = atomic64_read(&s->prefetched_pages);
	c->remote_mapped_pages = atomic64_read(&s->remote_mapped_pages);
	c->thrashing_events = atomic64_read(&s->thrashing_events);
	c->peer_to_device_pages = atomic64_read(&s->peer_to_device_pages);
	c->peer_to_device_bytes = c->peer_to_device_pages << PAGE_SHIFT;
	c->tlb_invalidates = atomic64_read(&s->tlb_invalidates);
	c->fault_dropped = atomic64_read(&s->fault_dropped);

	/* Without channels, copies run on queue 0. */
	if (!hdev->num_channels) {
		c->num_channels = 1;
		c->channel_busy_ns[0] = atomic64_read(&hdev->queues[0].busy_ns);
		return;
	}
	c->num_channels = hdev->num_channels;
	for (i = 0; i < hdev->num_channels; i++)
		c->channel_busy_ns[i] =
			atomic64_read(&hmmgpu_queue_get(hdev, i + 1)->busy_ns);
}

static bool hmmgpu_counters_valid(const struct hmmgpu_counters *args)
{
	return !args->flags &&
	       !memchr_inv(args->reserved, 0, sizeof(args->reserved));
}

/**
 * hmmgpu_ioctl_get_counters() - HMMGPU_IOCTL_GET_COUNTERS
 * @hfile: the open file
 * @uarg: user pointer to &struct hmmgpu_counters of the caller's version
 * @usize: its size, from the ioctl number
 *
 * The structure grows at its end: a caller's smaller (older) one is filled
 * as far as it goes, a larger (newer) one must be zero past ours.
 *
 * Context: process context, &hmmgpu_device.unplug_lock held for read.
 * Return: 0 or -errno as documented in include/uapi/hmmgpu.h.
 */
int hmmgpu_ioctl_get_counters(struct hmmgpu_file *hfile, void __user *uarg,
			      unsigned int usize)
{
	struct hmmgpu_counters args;
	int ret;

	if (usize < HMMGPU_COUNTERS_SIZE_V1)
		return -EINVAL;
	ret = copy_struct_from_user(&args, sizeof(args), uarg, usize);
	if (ret)
		return ret;
	if (!hmmgpu_counters_valid(&args))
		return -EINVAL;

	memset(&args, 0, sizeof(args));
	hmmgpu_device_counters(hfile->hdev, &args);
	if (copy_to_user(uarg, &args, min_t(size_t, usize, sizeof(args))))
		return -EFAULT;
	return 0;
}

#define HMMGPU_COUNTER(name) { #name, offsetof(struct hmmgpu_counters, name) }

/* The counters debugfs shows, in this order, before the per-channel ones. */
static const struct {
	const char *name;
	size_t offset;
} hmmgpu_counter_fields[] = {
	HMMGPU_COUNTER(to_device_pages),
	HMMGPU_COUNTER(to_device_bytes),
	HMMGPU_COUNTER(to_system_pages),
	HMMGPU_COUNTER(to_system_bytes),
	HMMGPU_COUNTER(cpu_faults),
	HMMGPU_COUNTER(fault_around_pages),
	HMMGPU_COUNTER(copy_batches),
	HMMGPU_COUNTER(copy_errors),
	HMMGPU_COUNTER(vram_alloc_failures),
	HMMGPU_COUNTER(device_faults),
	HMMGPU_COUNTER(fault_replays),
	HMMGPU_COUNTER(fault_cancels),
	HMMGPU_COUNTER(evicted_chunks),
	HMMGPU_COUNTER(evicted_pages),
	HMMGPU_COUNTER(evicted_bytes),
	HMMGPU_COUNTER(fault_batches),
	HMMGPU_COUNTER(fault_duplicates),
	HMMGPU_COUNTER(prefetched_pages),
	HMMGPU_COUNTER(remote_mapped_pages),
	HMMGPU_COUNTER(thrashing_events),
	HMMGPU_COUNTER(peer_to_device_pages),
	HMMGPU_COUNTER(peer_to_device_bytes),
	HMMGPU_COUNTER(tlb_invalidates),
	HMMGPU_COUNTER(fault_dropped),
};

static int hmmgpu_counters_show(struct seq_file *m, void *unused)
{
	struct hmmgpu_device *hdev = m->private;
	struct hmmgpu_counters c = {};
	unsigned int i;

	hmmgpu_device_counters(hdev, &c);
	for (i = 0; i < ARRAY_SIZE(hmmgpu_counter_fields); i++)
		seq_printf(m, "%s %llu\n", hmmgpu_counter_fields[i].name,
			   *(u64 *)((char *)&c + hmmgpu_counter_fields[i].offset));
	seq_printf(m, "num_channels %u\n", c.num_channels);
	for (i = 0; i < c.num_channels; i++)
		seq_printf(m, "channel%u_busy_ns %llu\n", i,
			   c.channel_busy_ns[i]);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hmmgpu_counters);

/*
 * What a stalled job waits for: per queue the last command submitted, the
 * completion the interrupts reported and the hardware's fence; whether the
 * fault worker is queued or running; then the backend's registers.
 */
static int hmmgpu_state_show(struct seq_file *m, void *unused)
{
	struct hmmgpu_device *hdev = m->private;
	unsigned int i, busy = work_busy(&hdev->fault_work);

	seq_printf(m, "state %d\n", hmmgpu_device_state(hdev));
	seq_printf(m, "fault_work%s%s\n",
		   busy & WORK_BUSY_PENDING ? " pending" : "",
		   busy & WORK_BUSY_RUNNING ? " running" : "");
	for (i = 0; i < hdev->num_queues; i++) {
		struct hmmgpu_queue *q = hmmgpu_queue_get(hdev, i);
		unsigned int jobs = 0;
		struct list_head *pos;
		u64 irq_fence;

		spin_lock_irq(&q->irq_lock);
		irq_fence = q->irq_fence;
		spin_unlock_irq(&q->irq_lock);
		spin_lock(&q->job_lock);
		list_for_each(pos, &q->jobs)
			jobs++;
		spin_unlock(&q->job_lock);
		seq_printf(m, "queue%u submitted %llu signalled %llu fence %llu jobs %u\n",
			   i, READ_ONCE(q->last_seqno), irq_fence,
			   hdev->ops->queue_fence(q), jobs);
	}
	if (hdev->ops->debugfs_show)
		hdev->ops->debugfs_show(hdev, m);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hmmgpu_state);

/**
 * hmmgpu_debugfs_init() - create the debugfs directory hmmgpu
 *
 * Without debugfs nothing is created; that is not an error.
 */
void hmmgpu_debugfs_init(void)
{
	hmmgpu_debugfs_root = debugfs_create_dir("hmmgpu", NULL);
}

/**
 * hmmgpu_debugfs_exit() - remove what hmmgpu_debugfs_init() created
 */
void hmmgpu_debugfs_exit(void)
{
	debugfs_remove_recursive(hmmgpu_debugfs_root);
	hmmgpu_debugfs_root = NULL;
}

/**
 * hmmgpu_debugfs_add() - create the debugfs files of a device
 * @hdev: the device, being registered
 *
 * Creates hmmgpu/hmmgpuN/counters and hmmgpu/hmmgpuN/state; failures are ignored (debugfs is for
 * debugging only).
 */
void hmmgpu_debugfs_add(struct hmmgpu_device *hdev)
{
	hdev->debugfs = debugfs_create_dir(dev_name(&hdev->dev),
					   hmmgpu_debugfs_root);
	debugfs_create_file("counters", 0444, hdev->debugfs, hdev,
			    &hmmgpu_counters_fops);
	debugfs_create_file("state", 0400, hdev->debugfs, hdev,
			    &hmmgpu_state_fops);
}

/**
 * hmmgpu_debugfs_remove() - remove the debugfs files of a device
 * @hdev: the device, being unregistered
 *
 * Waits for the readers of the files.
 */
void hmmgpu_debugfs_remove(struct hmmgpu_device *hdev)
{
	debugfs_remove_recursive(hdev->debugfs);
	hdev->debugfs = NULL;
}
