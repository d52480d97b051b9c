// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: backend-neutral device core: class, chardev, sysfs, ioctls
 */

/**
 * DOC: Overview
 *
 * Every GPU, whatever implements it, is a &struct hmmgpu_device with a
 * character device /dev/hmmgpuN (mode 0666: each process only ever acts on
 * its own address space) and attributes in /sys/class/hmmgpu/hmmgpuN/. The
 * core owns the device's life cycle, its queues and fences
 * (hmmgpu_queue.c) and the user interface (include/uapi/hmmgpu.h); it never
 * names a backend.
 *
 * A backend is a driver for one kind of hardware (hmmgpu_emu.c for the
 * emulated PCI GPU, hmmgpu_sysram.c for a device without hardware). From its
 * probe it:
 *
 * 1. allocates the device with hmmgpu_device_alloc(), passing its parent
 *    &struct device and a &struct hmmgpu_backend_ops (the table must provide
 *    every member marked required);
 * 2. fills in the identification fields (name, VRAM size, ...), its private
 *    data and each queue's private data, and starts its hardware;
 * 3. calls hmmgpu_device_register(), which runs a NOP on queue 0 as a
 *    self-test, sets up the VRAM allocator (hmmgpu_vram.c) of a device
 *    with %HMMGPU_CAP_MIGRATE and creates /dev/hmmgpuN and its debugfs
 *    directory (hmmgpu_counters.c).
 *
 * From its remove it calls hmmgpu_device_unregister() first, which moves
 * every page still in VRAM back to system memory, then stops the hardware,
 * frees its interrupts and drops its reference with
 * hmmgpu_device_put(). N is the lowest free number when the device is
 * allocated.
 */

/**
 * DOC: Examples
 *
 * The probe of a backend with devres-managed data::
 *
 *	static void foo_put_device(void *hdev)
 *	{
 *		hmmgpu_device_put(hdev);
 *	}
 *
 *	static int foo_probe(struct foo *foo, struct device *dev)
 *	{
 *		struct hmmgpu_device *hdev;
 *		int ret;
 *
 *		hdev = hmmgpu_device_alloc(dev, &foo_ops, foo->channels, 0);
 *		if (IS_ERR(hdev))
 *			return PTR_ERR(hdev);
 *		// before anything that may call hmmgpu_queue_signal()
 *		ret = devm_add_action_or_reset(dev, foo_put_device, hdev);
 *		if (ret)
 *			return ret;
 *		hdev->priv = foo;
 *		strscpy(hdev->name, foo->name);
 *		hdev->vram_size = foo->vram_size;
 *		// set hdev->queues[i].priv, request interrupts, start engines
 *		return hmmgpu_device_register(hdev);
 *	}
 *
 *	static void foo_remove(struct foo *foo)
 *	{
 *		hmmgpu_device_unregister(foo->hdev);
 *		// stop the engines; devres frees the interrupts, then puts
 *	}
 */

/**
 * DOC: Locking
 *
 * Locks, outermost first:
 *
 * 1. &hmmgpu_device.unplug_lock (rwsem): read side held by every ioctl
 *    for its whole duration, write side taken once by
 *    hmmgpu_device_unregister() to wait until no ioctl uses the backend.
 * 2. mmap lock (read) and page locks, taken by the migration code
 *    (hmmgpu_migrate.c) and by mm around &dev_pagemap_ops.migrate_to_ram.
 * 3. &hmmgpu_queue.lock (mutex): one job at a time per queue, from its first
 *    command to the end of its wait; protects the queue's submission state
 *    and is held across every &hmmgpu_backend_ops.queue_* call but
 *    &hmmgpu_backend_ops.queue_fence. A copy holds several, taken in
 *    increasing queue order (one lockdep class per queue number).
 * 4. &hmmgpu_queue.irq_lock (spinlock, taken in hard IRQ context): the
 *    fence and time of the last completion signal.
 *
 * &hmmgpu_device.state is an atomic that only moves forward (ready, halted,
 * lost, removed); every change wakes all queue waiters so that they stop
 * waiting for a device that will not complete their job.
 *
 * Lifetime: &hmmgpu_device.dev is reference counted. The backend holds one
 * reference from hmmgpu_device_alloc() to hmmgpu_device_put(), every open
 * file holds one, and the last put frees the device, its queues and its
 * minor. Once hmmgpu_device_unregister() has returned the backend may free
 * its own data: no ioctl reaches it any more, they fail with -ENODEV, and no
 * VRAM page is left for a CPU fault to copy. The fault path does not take
 * the unplug lock; it stops at hmmgpu_job_begin(), under the queue lock,
 * once the device is removed, and unregister takes every queue lock once
 * after marking the device removed.
 *
 * Each open file binds the opener's mm (mmgrab() at open, mmdrop() at
 * release, so the pointer cannot be reused by another mm while the file
 * lives). Every ioctl that acts on an address space (MIGRATE, LAUNCH, WAIT,
 * RESIDENCY, ADVISE, GET_ADVICE) acts on that mm only, and fails with
 * -EPERM unless current->mm is it: a file inherited through fork, passed
 * over a socket or kept across exec gives no access to any address space.
 */

#include <linux/compat.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "hmmgpu_drv.h"

static dev_t hmmgpu_devt;
static DEFINE_IDA(hmmgpu_ida);

static const char * const hmmgpu_state_names[] = {
	[HMMGPU_STATE_READY] = "ready",
	[HMMGPU_STATE_HALTED] = "halted",
	[HMMGPU_STATE_LOST] = "lost",
	[HMMGPU_STATE_REMOVED] = "removed",
};

/**
 * hmmgpu_device_state() - the current state of a device
 * @hdev: the device
 *
 * Return: an enum hmmgpu_state; it may move forward at any time.
 */
enum hmmgpu_state hmmgpu_device_state(struct hmmgpu_device *hdev)
{
	return atomic_read(&hdev->state);
}

/**
 * hmmgpu_device_set_state() - move a device forward in its life cycle
 * @hdev: the device
 * @state: the new state; ignored unless it is later than the current one
 *
 * Wakes every queue waiter. Context: any.
 */
void hmmgpu_device_set_state(struct hmmgpu_device *hdev,
			     enum hmmgpu_state state)
{
	int old = atomic_read(&hdev->state);
	unsigned int i;

	do {
		if (old >= state)
			return;
	} while (!atomic_try_cmpxchg(&hdev->state, &old, state));

	for (i = 0; i < hdev->num_queues; i++)
		wake_up_all(&hmmgpu_queue_get(hdev, i)->wq);
}

/**
 * hmmgpu_device_usable() - whether a device accepts commands
 * @hdev: the device
 *
 * Return: 0 when it is ready, -EIO when it has halted, -ENODEV when it was
 * lost or removed.
 */
int hmmgpu_device_usable(struct hmmgpu_device *hdev)
{
	switch (hmmgpu_device_state(hdev)) {
	case HMMGPU_STATE_READY:
		return 0;
	case HMMGPU_STATE_HALTED:
		return -EIO;
	default:
		return -ENODEV;
	}
}

/* sysfs */

static ssize_t name_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	return sysfs_emit(buf, "%s\n", to_hmmgpu_device(dev)->name);
}
static DEVICE_ATTR_RO(name);

static ssize_t backend_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%s\n", to_hmmgpu_device(dev)->ops->name);
}
static DEVICE_ATTR_RO(backend);

static ssize_t vram_total_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", to_hmmgpu_device(dev)->vram_size);
}
static DEVICE_ATTR_RO(vram_total);

static ssize_t vram_used_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n",
			  hmmgpu_vram_used(to_hmmgpu_device(dev)));
}
static DEVICE_ATTR_RO(vram_used);

static ssize_t channels_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	return sysfs_emit(buf, "%u\n", to_hmmgpu_device(dev)->num_channels);
}
static DEVICE_ATTR_RO(channels);

static ssize_t state_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	enum hmmgpu_state state = hmmgpu_device_state(to_hmmgpu_device(dev));

	return sysfs_emit(buf, "%s\n", hmmgpu_state_names[state]);
}
static DEVICE_ATTR_RO(state);

static struct attribute *hmmgpu_attrs[] = {
	&dev_attr_name.attr,
	&dev_attr_backend.attr,
	&dev_attr_vram_total.attr,
	&dev_attr_vram_used.attr,
	&dev_attr_channels.attr,
	&dev_attr_state.attr,
	NULL
};
ATTRIBUTE_GROUPS(hmmgpu);

static char *hmmgpu_devnode(const struct device *dev, umode_t *mode)
{
	if (mode)
		*mode = 0666;
	return NULL;
}

static const struct class hmmgpu_class = {
	.name = "hmmgpu",
	.devnode = hmmgpu_devnode,
	.dev_groups = hmmgpu_groups,
};

/**
 * hmmgpu_device_is_peer() - whether a device reaches another's VRAM
 * @hdev: a device
 * @other: another device, or @hdev
 *
 * Peers copy VRAM to VRAM (%HMMGPU_COPY_FROM_PEER) and map each other's
 * pages (%HMMGPU_PTE_PEER): the same backend says they are in the same
 * &hmmgpu_device.peer_group.
 *
 * Return: true when @other is a peer of @hdev (never @hdev itself).
 */
bool hmmgpu_device_is_peer(const struct hmmgpu_device *hdev,
			   const struct hmmgpu_device *other)
{
	return other != hdev && other->ops == hdev->ops &&
	       hdev->peer_group && other->peer_group == hdev->peer_group;
}

struct hmmgpu_peer_scan {
	struct hmmgpu_device *hdev;
	u64 mask;
};

static int hmmgpu_peer_scan_one(struct device *dev, void *data)
{
	struct hmmgpu_peer_scan *scan = data;
	struct hmmgpu_device *other = to_hmmgpu_device(dev);

	if (hmmgpu_device_is_peer(scan->hdev, other) &&
	    hmmgpu_device_state(other) == HMMGPU_STATE_READY)
		scan->mask |= BIT_ULL(other->minor);
	return 0;
}

/**
 * hmmgpu_device_peers() - the peers of a device that are ready
 * @hdev: the device
 *
 * Return: bit N set for each peer /dev/hmmgpuN (&hmmgpu_info.peers).
 */
u64 hmmgpu_device_peers(struct hmmgpu_device *hdev)
{
	struct hmmgpu_peer_scan scan = { .hdev = hdev };

	class_for_each_device(&hmmgpu_class, NULL, &scan, hmmgpu_peer_scan_one);
	return scan.mask;
}

/* ioctls */

static int hmmgpu_ioctl_get_info(struct hmmgpu_file *hfile,
				 void __user *uarg)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	struct hmmgpu_info info;

	memset(&info, 0, sizeof(info));
	info.uapi_version = HMMGPU_UAPI_VERSION;
	info.backend = hdev->ops->type;
	info.hw_version = hdev->hw_version;
	info.caps = hdev->caps;
	info.vram_size = hdev->vram_size;
	info.num_channels = hdev->num_channels;
	info.num_queues = hdev->num_queues;
	info.index = hdev->minor;
	strscpy(info.name, hdev->name);
	info.peers = hmmgpu_device_peers(hdev);
	if (hdev->caps & HMMGPU_CAP_COMPUTE) {
		info.num_streams = hdev->num_compute;
		info.num_contexts = hdev->num_contexts;
	}

	if (copy_to_user(uarg, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

static bool hmmgpu_nop_valid(struct hmmgpu_device *hdev,
			     const struct hmmgpu_nop *args)
{
	return !args->flags && !args->pad &&
	       !memchr_inv(args->reserved, 0, sizeof(args->reserved)) &&
	       args->count >= 1 && args->count <= HMMGPU_NOP_MAX &&
	       args->queue < hdev->num_queues;
}

static int hmmgpu_ioctl_nop(struct hmmgpu_file *hfile, void __user *uarg)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	struct hmmgpu_nop args;
	unsigned int qi;
	int ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (!hmmgpu_nop_valid(hdev, &args))
		return -EINVAL;

	qi = array_index_nospec(args.queue, hdev->num_queues);
	ret = hmmgpu_queue_nop(&hdev->queues[qi], args.count, &args.elapsed_ns);
	if (ret)
		return ret;

	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return 0;
}

typedef int (*hmmgpu_ioctl_fn)(struct hmmgpu_file *hfile, void __user *uarg);

/*
 * GET_COUNTERS grows at its end (see the uapi header): every size from the
 * first version's on is the same ioctl.
 */
static bool hmmgpu_ioctl_is_counters(unsigned int cmd)
{
	return _IOC_TYPE(cmd) == HMMGPU_IOCTL_MAGIC &&
	       _IOC_NR(cmd) == _IOC_NR(HMMGPU_IOCTL_GET_COUNTERS) &&
	       _IOC_DIR(cmd) == (_IOC_READ | _IOC_WRITE);
}

/* The handler of @cmd, or NULL for an unknown ioctl (or GET_COUNTERS). */
static hmmgpu_ioctl_fn hmmgpu_ioctl_lookup(unsigned int cmd)
{
	switch (cmd) {
	case HMMGPU_IOCTL_GET_INFO:
		return hmmgpu_ioctl_get_info;
	case HMMGPU_IOCTL_NOP:
		return hmmgpu_ioctl_nop;
	case HMMGPU_IOCTL_MIGRATE:
		return hmmgpu_ioctl_migrate;
	case HMMGPU_IOCTL_LAUNCH:
		return hmmgpu_ioctl_launch;
	case HMMGPU_IOCTL_WAIT:
		return hmmgpu_ioctl_wait;
	case HMMGPU_IOCTL_RESIDENCY:
		return hmmgpu_ioctl_residency;
	case HMMGPU_IOCTL_ADVISE:
		return hmmgpu_ioctl_advise;
	case HMMGPU_IOCTL_GET_ADVICE:
		return hmmgpu_ioctl_get_advice;
	default:
		return NULL;
	}
}

static long hmmgpu_ioctl(struct file *file, unsigned int cmd,
			 unsigned long arg)
{
	struct hmmgpu_file *hfile = file->private_data;
	struct hmmgpu_device *hdev = hfile->hdev;
	bool counters = hmmgpu_ioctl_is_counters(cmd);
	hmmgpu_ioctl_fn fn = hmmgpu_ioctl_lookup(cmd);
	int ret;

	if (!fn && !counters)
		return -ENOTTY;

	down_read(&hdev->unplug_lock);
	if (hmmgpu_device_state(hdev) >= HMMGPU_STATE_LOST)
		ret = -ENODEV;
	else if (counters)
		ret = hmmgpu_ioctl_get_counters(hfile, (void __user *)arg,
						_IOC_SIZE(cmd));
	else
		ret = fn(hfile, (void __user *)arg);
	up_read(&hdev->unplug_lock);
	return ret;
}

static int hmmgpu_open(struct inode *inode, struct file *file)
{
	struct hmmgpu_device *hdev = container_of(inode->i_cdev,
						  struct hmmgpu_device, cdev);
	struct hmmgpu_file *hfile;
	struct hmmgpu_mm *hm;

	if (!current->mm)
		return -EINVAL;
	hfile = kzalloc(sizeof(*hfile), GFP_KERNEL);
	if (!hfile)
		return -ENOMEM;
	hm = hmmgpu_mm_get(current->mm);
	if (IS_ERR(hm)) {
		kfree(hfile);
		return PTR_ERR(hm);
	}
	hfile->advice = hm;
	get_device(&hdev->dev);
	hfile->hdev = hdev;
	hfile->pid = get_pid(task_tgid(current));
	mutex_init(&hfile->lock);
	INIT_LIST_HEAD(&hfile->launches);
	mmgrab(current->mm);
	hfile->mm = current->mm;
	file->private_data = hfile;
	return nonseekable_open(inode, file);
}

static int hmmgpu_release(struct inode *inode, struct file *file)
{
	struct hmmgpu_file *hfile = file->private_data;
	struct hmmgpu_device *hdev = hfile->hdev;

	down_read(&hdev->unplug_lock);
	hmmgpu_launch_release(hfile);
	up_read(&hdev->unplug_lock);
	hmmgpu_mm_put(hfile->advice);
	put_pid(hfile->pid);
	mmdrop(hfile->mm);
	put_device(&hfile->hdev->dev);
	kfree(hfile);
	return 0;
}

static __poll_t hmmgpu_poll(struct file *file, poll_table *wait)
{
	struct hmmgpu_file *hfile = file->private_data;
	struct hmmgpu_device *hdev = hfile->hdev;
	__poll_t mask;

	down_read(&hdev->unplug_lock);
	if (hmmgpu_device_state(hdev) >= HMMGPU_STATE_LOST)
		mask = EPOLLERR;
	else
		mask = hmmgpu_launch_poll(hfile, file, wait);
	up_read(&hdev->unplug_lock);
	return mask;
}

/*
 * /proc/PID/fdinfo/FD of a device file, in the key-value style of DRM's
 * fdinfo (Documentation/gpu/drm-usage-stats.rst); the keys are documented
 * in the uapi header.
 */
static void hmmgpu_show_fdinfo(struct seq_file *m, struct file *file)
{
	struct hmmgpu_file *hfile = file->private_data;
	struct hmmgpu_device *hdev = hfile->hdev;
	unsigned int pending;

	mutex_lock(&hfile->lock);
	pending = hfile->nlaunches;
	mutex_unlock(&hfile->lock);
	seq_printf(m, "hmmgpu-device:\t%s\n", dev_name(&hdev->dev));
	seq_printf(m, "hmmgpu-pid:\t%d\n", pid_vnr(hfile->pid));
	seq_printf(m, "hmmgpu-vram-resident:\t%lu KiB\n",
		   hmmgpu_mm_vram_pages(hfile->advice, hdev->minor) <<
		   (PAGE_SHIFT - 10));
	seq_printf(m, "hmmgpu-launches-pending:\t%u\n", pending);
}

static const struct file_operations hmmgpu_fops = {
	.owner = THIS_MODULE,
	.open = hmmgpu_open,
	.release = hmmgpu_release,
	.poll = hmmgpu_poll,
	.unlocked_ioctl = hmmgpu_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.show_fdinfo = hmmgpu_show_fdinfo,
};

/* life cycle */

static void hmmgpu_device_release(struct device *dev)
{
	struct hmmgpu_device *hdev = to_hmmgpu_device(dev);
	unsigned int i;

	/* A fault interrupt may have queued the worker after unregister. */
	cancel_work_sync(&hdev->fault_work);
	kvfree(hdev->fault_batch);
	xa_destroy(&hdev->contexts);
	for (i = 0; i < hdev->num_queues; i++)
		mutex_destroy(&hmmgpu_queue_get(hdev, i)->lock);
	ida_free(&hmmgpu_ida, hdev->minor);
	kfree(hdev->queues);
	kfree(hdev);
}

static bool hmmgpu_ops_valid(const struct hmmgpu_backend_ops *ops)
{
	return ops->name && ops->type && ops->queue_space &&
	       ops->queue_write && ops->queue_kick && ops->queue_fence &&
	       !ops->chunk_alloc == !ops->chunk_free;
}

static bool hmmgpu_caps_valid(struct hmmgpu_device *hdev)
{
	const struct hmmgpu_backend_ops *ops = hdev->ops;
	unsigned int i;

	for (i = 0; i < hdev->num_queues; i++)
		if (hdev->queues[i].entries < 2)
			return false;
	if ((hdev->caps & HMMGPU_CAP_COMPUTE) &&
	    (!ops->queue_status || !ops->mmu_alloc || !ops->mmu_free ||
	     !ops->mmu_prepare || !ops->mmu_query ||
	     !ops->mmu_map || !ops->mmu_unmap || !ops->fault_fetch ||
	     !hdev->num_compute || !hdev->num_contexts))
		return false;
	return !(hdev->caps & HMMGPU_CAP_MIGRATE) ||
	       (ops->copy_prepare && ops->copy_finish);
}

static void hmmgpu_device_init_dev(struct hmmgpu_device *hdev,
				   struct device *parent)
{
	device_initialize(&hdev->dev);
	hdev->dev.class = &hmmgpu_class;
	hdev->dev.parent = parent;
	hdev->dev.devt = MKDEV(MAJOR(hmmgpu_devt), hdev->minor);
	hdev->dev.release = hmmgpu_device_release;
	cdev_init(&hdev->cdev, &hmmgpu_fops);
	hdev->cdev.owner = THIS_MODULE;
}

/**
 * hmmgpu_device_alloc() - allocate a device for a backend
 * @parent: the backend's device (PCI function, platform device)
 * @ops: the backend's operations; every required member must be set
 * @num_channels: copy-engine channels
 * @num_compute: compute queues; the device gets 1 + @num_channels +
 *	@num_compute queues
 *
 * Context: process context, may sleep.
 * Return: the device, holding one reference for the caller (drop it with
 * hmmgpu_device_put()), or ERR_PTR(-EINVAL) for a bad @ops or channel
 * count, ERR_PTR(-ENOSPC) when every minor is taken, ERR_PTR(-ENOMEM).
 */
struct hmmgpu_device *hmmgpu_device_alloc(struct device *parent,
					  const struct hmmgpu_backend_ops *ops,
					  unsigned int num_channels,
					  unsigned int num_compute)
{
	struct hmmgpu_device *hdev;
	unsigned int i;
	int ret;

	if (WARN_ON(!hmmgpu_ops_valid(ops)) ||
	    1 + num_channels + num_compute > HMMGPU_MAX_QUEUES)
		return ERR_PTR(-EINVAL);

	hdev = kzalloc(sizeof(*hdev), GFP_KERNEL);
	if (!hdev)
		return ERR_PTR(-ENOMEM);
	hdev->num_channels = num_channels;
	hdev->num_compute = num_compute;
	hdev->num_queues = 1 + num_channels + num_compute;
	hdev->queues = kcalloc(hdev->num_queues, sizeof(*hdev->queues),
			       GFP_KERNEL);
	if (!hdev->queues) {
		ret = -ENOMEM;
		goto err_free_hdev;
	}
	ret = ida_alloc_max(&hmmgpu_ida, HMMGPU_MAX_DEVICES - 1, GFP_KERNEL);
	if (ret < 0)
		goto err_free_queues;
	hdev->minor = ret;

	hdev->ops = ops;
	init_rwsem(&hdev->unplug_lock);
	xa_init_flags(&hdev->contexts, XA_FLAGS_ALLOC);
	INIT_WORK(&hdev->fault_work, hmmgpu_fault_work);
	atomic_set(&hdev->state, HMMGPU_STATE_READY);
	for (i = 0; i < hdev->num_queues; i++)
		hmmgpu_queue_init(&hdev->queues[i], hdev, i);

	hmmgpu_device_init_dev(hdev, parent);
	ret = dev_set_name(&hdev->dev, "hmmgpu%d", hdev->minor);
	if (ret) {
		put_device(&hdev->dev);	/* frees everything */
		return ERR_PTR(ret);
	}
	return hdev;

err_free_queues:
	kfree(hdev->queues);
err_free_hdev:
	kfree(hdev);
	return ERR_PTR(ret);
}

/**
 * hmmgpu_device_put() - drop the backend's reference to a device
 * @hdev: the device
 *
 * The device is freed when the last open file is closed as well.
 */
void hmmgpu_device_put(struct hmmgpu_device *hdev)
{
	put_device(&hdev->dev);
}

/**
 * hmmgpu_device_register() - self-test a device and make it visible
 * @hdev: the device, with identification and backend data filled in and
 *	its hardware able to execute commands
 *
 * Runs one NOP on queue 0 and waits for its fence and completion signal,
 * sets up the VRAM allocator of a device with %HMMGPU_CAP_MIGRATE, then
 * adds /dev/hmmgpuN and its sysfs attributes.
 *
 * Context: process context, may sleep up to the fence timeout.
 * Return: 0; -EINVAL when the backend lacks an op its caps need, a queue has
 * no ring size (&hmmgpu_queue.entries) or the VRAM
 * size is not a multiple of %HMMGPU_CHUNK_SIZE; -ETIMEDOUT, -EIO or -ENODEV
 * when the self-test failed; -ENOMEM; or the error of cdev_device_add().
 */
int hmmgpu_device_register(struct hmmgpu_device *hdev)
{
	int ret;

	if (WARN_ON(!hmmgpu_caps_valid(hdev)))
		return -EINVAL;
	ret = hmmgpu_queue_nop(&hdev->queues[0], 1, &hdev->nop_ns);
	if (ret) {
		dev_err(hdev->dev.parent, "NOP self-test on queue 0 failed: %pe\n",
			ERR_PTR(ret));
		return ret;
	}

	if (hdev->caps & HMMGPU_CAP_MIGRATE) {
		ret = hmmgpu_vram_init(hdev);
		if (ret)
			return ret;
	}

	hdev->caps |= HMMGPU_CAP_COUNTERS;
	ret = cdev_device_add(&hdev->cdev, &hdev->dev);
	if (ret) {
		hmmgpu_vram_fini(hdev);
		return ret;
	}
	hdev->registered = true;
	hmmgpu_debugfs_add(hdev);

	dev_info(&hdev->dev,
		 "%s (%s, %s): %llu MiB VRAM, %u channels, NOP round trip %llu us\n",
		 hdev->name, hdev->ops->name, dev_name(hdev->dev.parent),
		 hdev->vram_size >> 20, hdev->num_channels,
		 div_u64(hdev->nop_ns, NSEC_PER_USEC));
	return 0;
}

/*
 * Tear down the address spaces of the files still open, while the device
 * still executes the unbinding (which fails their stalled launches), and
 * let no new one be created.
 */
static void hmmgpu_device_destroy_contexts(struct hmmgpu_device *hdev)
{
	struct hmmgpu_ctx *ctx;
	unsigned long index;

	xa_lock(&hdev->contexts);
	hdev->contexts_closed = true;
	xa_unlock(&hdev->contexts);
	xa_for_each(&hdev->contexts, index, ctx) {
		ctx = hmmgpu_ctx_get(hdev, index);
		if (!ctx)
			continue;
		hmmgpu_ctx_destroy(ctx);
		hmmgpu_ctx_put(ctx);
	}
}

/**
 * hmmgpu_device_unregister() - detach a device from its backend
 * @hdev: the device
 *
 * Removes /dev/hmmgpuN, moves every page in its VRAM back to system memory
 * and tears down the device address spaces (while the device still
 * executes), marks the device removed (waking every waiter), waits until no
 * ioctl runs and no job holds a queue, and releases the VRAM. Afterwards
 * open files get -ENODEV and the core calls no backend op any more; the
 * backend may stop its hardware.
 *
 * Context: process context, may sleep.
 */
void hmmgpu_device_unregister(struct hmmgpu_device *hdev)
{
	unsigned int i;

	if (hdev->registered) {
		hmmgpu_debugfs_remove(hdev);
		cdev_device_del(&hdev->cdev, &hdev->dev);
	}
	hdev->registered = false;

	hmmgpu_vram_evict(hdev);
	/*
	 * A file released from now on finds its context torn down already
	 * (hmmgpu_ctx_destroy() does nothing twice); one released before tore
	 * it down itself, under the unplug lock, which is waited for below.
	 */
	hmmgpu_device_destroy_contexts(hdev);
	hmmgpu_device_set_state(hdev, HMMGPU_STATE_REMOVED);
	down_write(&hdev->unplug_lock);
	up_write(&hdev->unplug_lock);
	/* A job that began before the state changed has ended after this. */
	cancel_work_sync(&hdev->fault_work);
	for (i = 0; i < hdev->num_queues; i++)
		hmmgpu_queue_quiesce(&hdev->queues[i]);
	hmmgpu_vram_fini(hdev);

	dev_info(&hdev->dev, "%s (%s, %s) removed\n", hdev->name,
		 hdev->ops->name, dev_name(hdev->dev.parent));
}

/**
 * hmmgpu_core_init() - register the class and the character device region
 *
 * Return: 0 or -errno.
 */
int hmmgpu_core_init(void)
{
	int ret;

	ret = alloc_chrdev_region(&hmmgpu_devt, 0, HMMGPU_MAX_DEVICES, "hmmgpu");
	if (ret)
		return ret;
	ret = class_register(&hmmgpu_class);
	if (ret)
		goto err_unregister_region;
	hmmgpu_debugfs_init();
	return 0;

err_unregister_region:
	unregister_chrdev_region(hmmgpu_devt, HMMGPU_MAX_DEVICES);
	return ret;
}

/**
 * hmmgpu_core_exit() - undo hmmgpu_core_init(); every device is gone
 */
void hmmgpu_core_exit(void)
{
	hmmgpu_debugfs_exit();
	class_unregister(&hmmgpu_class);
	unregister_chrdev_region(hmmgpu_devt, HMMGPU_MAX_DEVICES);
	ida_destroy(&hmmgpu_ida);
}
