// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: kernel launches on the device's compute streams
 */

/**
 * DOC: Launches
 *
 * HMMGPU_IOCTL_LAUNCH submits one kernel on a stream, a compute queue of the
 * device: launches of one stream run in order, streams concurrently. The
 * kernel runs in the device address space of the file (hmmgpu_mirror.c),
 * created by the first launch. The launch's fence is its seqno on the
 * queue.
 *
 * Every launch not yet waited for is a &struct hmmgpu_launch_rec on the
 * file, at most %HMMGPU_LAUNCH_MAX_PENDING of them. Its job holds its ring
 * slot, where the hardware leaves the result, until HMMGPU_IOCTL_WAIT (or
 * HMMGPU_LAUNCH_WAIT) reads it. A waiter takes the record off the file's
 * list while it waits and puts it back when it gives up, so one launch is
 * waited for by one thread.
 *
 * At release the context is destroyed first (its unbinding fails the
 * stalled launches), then every record is waited for, a fence timeout at
 * most, and freed.
 */

#include <linux/nospec.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "hmmgpu_drv.h"

/**
 * struct hmmgpu_launch_rec - a launch of a file not yet waited for
 * @link: in &hmmgpu_file.launches
 * @q: its queue
 * @stream: its stream
 * @job: its job
 * @args: its arguments
 */
struct hmmgpu_launch_rec {
	struct list_head link;
	struct hmmgpu_queue *q;
	u32 stream;
	struct hmmgpu_job job;
	struct hmmgpu_launch_args args;
};

static bool hmmgpu_launch_valid(struct hmmgpu_device *hdev,
				const struct hmmgpu_launch *a)
{
	return !(a->flags & ~HMMGPU_LAUNCH_WAIT) &&
	       a->kernel >= HMMGPU_KERNEL_FILL_U32 &&
	       a->kernel <= HMMGPU_KERNEL_CHECKSUM &&
	       a->stream < hdev->num_compute && !a->pad && a->count &&
	       a->x < TASK_SIZE && a->y < TASK_SIZE &&
	       !memchr_inv(a->reserved, 0, sizeof(a->reserved));
}

/* The file's context, created on first use; under @hfile->lock. */
static struct hmmgpu_ctx *hmmgpu_launch_ctx(struct hmmgpu_file *hfile)
{
	struct hmmgpu_ctx *ctx;

	lockdep_assert_held(&hfile->lock);
	if (hfile->ctx)
		return hfile->ctx;
	ctx = hmmgpu_ctx_create(hfile->hdev, hfile->mm);
	if (!IS_ERR(ctx))
		hfile->ctx = ctx;
	return ctx;
}

/**
 * hmmgpu_file_ctx() - the device address space of a file, if it has one
 * @hfile: the file
 *
 * Return: the context with a reference (hmmgpu_ctx_put()), or NULL before
 * the file's first launch.
 */
struct hmmgpu_ctx *hmmgpu_file_ctx(struct hmmgpu_file *hfile)
{
	struct hmmgpu_ctx *ctx;

	mutex_lock(&hfile->lock);
	ctx = hfile->ctx;
	if (ctx && !kref_get_unless_zero(&ctx->ref))
		ctx = NULL;
	mutex_unlock(&hfile->lock);
	return ctx;
}

/* Submit @a as a new record of @hfile. Return: the record or an error. */
static struct hmmgpu_launch_rec *hmmgpu_launch_submit(struct hmmgpu_file *hfile,
						      const struct hmmgpu_launch *a)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	struct hmmgpu_cmd cmd = { .op = HMMGPU_CMD_LAUNCH };
	struct hmmgpu_launch_rec *rec;
	struct hmmgpu_ctx *ctx;
	int ret;

	mutex_lock(&hfile->lock);
	ctx = hmmgpu_launch_ctx(hfile);
	if (IS_ERR(ctx)) {
		ret = PTR_ERR(ctx);
		goto err_unlock;
	}
	ret = -EBUSY;
	if (hfile->nlaunches >= HMMGPU_LAUNCH_MAX_PENDING)
		goto err_unlock;
	ret = -ENOMEM;
	rec = kzalloc(sizeof(*rec), GFP_KERNEL);
	if (!rec)
		goto err_unlock;
	rec->stream = array_index_nospec(a->stream, hdev->num_compute);
	rec->q = hmmgpu_queue_get(hdev, 1 + hdev->num_channels + rec->stream);
	rec->args = (struct hmmgpu_launch_args) {
		.ctx = ctx->index,
		.kernel = a->kernel,
		.count = a->count,
		.va0 = a->x,
		.va1 = a->y,
		.scalar = a->scalar,
	};
	cmd.launch = &rec->args;
	ret = hmmgpu_queue_submit(rec->q, &cmd, &rec->job);
	if (ret) {
		kfree(rec);
		goto err_unlock;
	}
	list_add_tail(&rec->link, &hfile->launches);
	hfile->nlaunches++;
	mutex_unlock(&hfile->lock);
	return rec;

err_unlock:
	mutex_unlock(&hfile->lock);
	return ERR_PTR(ret);
}

/* Take the record of (@stream, @fence) off the file. */
static struct hmmgpu_launch_rec *hmmgpu_launch_claim(struct hmmgpu_file *hfile,
						     u32 stream, u64 fence)
{
	struct hmmgpu_launch_rec *rec;

	mutex_lock(&hfile->lock);
	list_for_each_entry(rec, &hfile->launches, link) {
		if (rec->stream == stream && rec->job.last_seqno == fence) {
			list_del_init(&rec->link);
			mutex_unlock(&hfile->lock);
			return rec;
		}
	}
	mutex_unlock(&hfile->lock);
	return NULL;
}

static void hmmgpu_launch_free(struct hmmgpu_file *hfile,
			       struct hmmgpu_launch_rec *rec)
{
	hmmgpu_queue_release(rec->q, &rec->job);
	mutex_lock(&hfile->lock);
	hfile->nlaunches--;
	mutex_unlock(&hfile->lock);
	kfree(rec);
}

/*
 * Wait for a claimed record. On completion fill the results and free it;
 * otherwise give it back to the file. Return: 0 or the wait's error.
 */
static int hmmgpu_launch_wait(struct hmmgpu_file *hfile,
			      struct hmmgpu_launch_rec *rec,
			      unsigned long timeout, s32 *error, u64 *result,
			      u64 *fault_addr)
{
	int ret, status;
	u64 value;

	ret = hmmgpu_queue_poll(rec->q, &rec->job, timeout, &status, &value);
	if (ret) {
		mutex_lock(&hfile->lock);
		list_add_tail(&rec->link, &hfile->launches);
		mutex_unlock(&hfile->lock);
		return ret;
	}
	*error = -status;
	*result = status ? 0 : value;
	*fault_addr = status == -EFAULT ? value : 0;
	hmmgpu_launch_free(hfile, rec);
	return 0;
}

/**
 * hmmgpu_ioctl_launch() - HMMGPU_IOCTL_LAUNCH
 * @hfile: the open file
 * @uarg: user pointer to &struct hmmgpu_launch
 *
 * Context: process context, &hmmgpu_device.unplug_lock held for read.
 * Return: 0 or -errno as documented in include/uapi/hmmgpu.h.
 */
int hmmgpu_ioctl_launch(struct hmmgpu_file *hfile, void __user *uarg)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	struct hmmgpu_launch_rec *rec;
	struct hmmgpu_launch args;
	int ret;

	if (!(hdev->caps & HMMGPU_CAP_COMPUTE))
		return -ENOTTY;
	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (!hmmgpu_launch_valid(hdev, &args))
		return -EINVAL;
	args.error = 0;
	args.pad2 = 0;
	args.result = 0;
	args.fault_addr = 0;
	if (current->mm != hfile->mm)
		return -EPERM;
	/*
	 * The fence must reach the caller: fail an unwritable argument before
	 * the launch, which would otherwise stay pending with no way to wait
	 * for it.
	 */
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;

	rec = hmmgpu_launch_submit(hfile, &args);
	if (IS_ERR(rec))
		return PTR_ERR(rec);
	args.fence = rec->job.last_seqno;
	if (args.flags & HMMGPU_LAUNCH_WAIT) {
		rec = hmmgpu_launch_claim(hfile, rec->stream, args.fence);
		if (rec) {
			ret = hmmgpu_launch_wait(hfile, rec,
						 MAX_SCHEDULE_TIMEOUT,
						 &args.error, &args.result,
						 &args.fault_addr);
			/* An interrupted wait still reports the fence. */
			if (ret) {
				if (copy_to_user(uarg, &args, sizeof(args)))
					return -EFAULT;
				return ret;
			}
		}
	}
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return 0;
}

/**
 * hmmgpu_ioctl_wait() - HMMGPU_IOCTL_WAIT
 * @hfile: the open file
 * @uarg: user pointer to &struct hmmgpu_wait
 *
 * Context: process context, &hmmgpu_device.unplug_lock held for read.
 * Return: 0 or -errno as documented in include/uapi/hmmgpu.h.
 */
int hmmgpu_ioctl_wait(struct hmmgpu_file *hfile, void __user *uarg)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	struct hmmgpu_launch_rec *rec;
	struct hmmgpu_wait args;
	unsigned long timeout;
	int ret;

	if (!(hdev->caps & HMMGPU_CAP_COMPUTE))
		return -ENOTTY;
	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.flags || args.stream >= hdev->num_compute ||
	    memchr_inv(args.reserved, 0, sizeof(args.reserved)))
		return -EINVAL;
	/* The results of a launch are another process's business. */
	if (current->mm != hfile->mm)
		return -EPERM;
	/* Results are returned once: fail before taking them, not after. */
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;

	rec = hmmgpu_launch_claim(hfile, args.stream, args.fence);
	if (!rec)
		return -ENOENT;
	args.pad = 0;
	timeout = min_t(u64, nsecs_to_jiffies64(args.timeout_ns),
			MAX_SCHEDULE_TIMEOUT);
	ret = hmmgpu_launch_wait(hfile, rec, timeout, &args.error,
				 &args.result, &args.fault_addr);
	if (ret)
		return ret;
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return 0;
}

/**
 * hmmgpu_launch_release() - end the launches and the context of a file
 * @hfile: the file being released
 *
 * Context: process context, sleeps; &hmmgpu_device.unplug_lock held for
 * read. After the device was removed only the core's records are freed.
 */
void hmmgpu_launch_release(struct hmmgpu_file *hfile)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	bool removed = hmmgpu_device_state(hdev) == HMMGPU_STATE_REMOVED;
	unsigned long timeout = msecs_to_jiffies(hmmgpu_fence_timeout_ms);
	struct hmmgpu_launch_rec *rec, *tmp;
	int status;
	u64 value;

	/*
	 * Also when the device is being removed: until its contexts are torn
	 * down (under the unplug lock, which the caller holds for read), ours
	 * still has its notifiers; afterwards this does nothing.
	 */
	if (hfile->ctx)
		hmmgpu_ctx_destroy(hfile->ctx);
	list_for_each_entry_safe(rec, tmp, &hfile->launches, link) {
		list_del(&rec->link);
		if (!removed)
			hmmgpu_queue_poll(rec->q, &rec->job, timeout, &status,
					  &value);
		hmmgpu_launch_free(hfile, rec);
	}
	if (hfile->ctx)
		hmmgpu_ctx_put(hfile->ctx);
	hfile->ctx = NULL;
}

/**
 * hmmgpu_launch_poll() - &file_operations.poll of a device file
 * @hfile: the file
 * @file: the struct file
 * @wait: the poll table
 *
 * The file is readable once a launch of it not yet waited for has
 * completed: HMMGPU_IOCTL_WAIT then returns at once.
 *
 * Context: process context.
 * Return: EPOLLIN | EPOLLRDNORM when readable, else 0.
 */
__poll_t hmmgpu_launch_poll(struct hmmgpu_file *hfile, struct file *file,
			    poll_table *wait)
{
	struct hmmgpu_device *hdev = hfile->hdev;
	struct hmmgpu_launch_rec *rec;
	__poll_t mask = 0;
	unsigned int i;

	for (i = 0; i < hdev->num_compute; i++) {
		struct hmmgpu_queue *q;

		q = hmmgpu_queue_get(hdev, 1 + hdev->num_channels + i);
		poll_wait(file, &q->wq, wait);
	}
	mutex_lock(&hfile->lock);
	list_for_each_entry(rec, &hfile->launches, link) {
		if (hmmgpu_queue_job_done(rec->q, &rec->job)) {
			mask = EPOLLIN | EPOLLRDNORM;
			break;
		}
	}
	mutex_unlock(&hfile->lock);
	return mask;
}
