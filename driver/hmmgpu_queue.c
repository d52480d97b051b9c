// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: command submission and completion
 */

/**
 * DOC: Queues, jobs and fences
 *
 * A queue executes commands in order. The core numbers the commands of a
 * queue with a 64-bit seqno that starts at 1 and only grows, so it never
 * wraps; the backend reports the seqno of the last completed command as the
 * queue's fence (&hmmgpu_backend_ops.queue_fence).
 *
 * A job is a batch of commands for one queue. It is built and waited for
 * with the queue's lock held, so jobs on one queue run one after the other
 * and jobs on different queues run concurrently:
 *
 * 1. hmmgpu_job_begin() checks that the device runs and samples the
 *    queue's error count;
 * 2. hmmgpu_job_emit() writes one command, first waiting for ring space if
 *    the ring is full (publishing what the job has written so far, then
 *    polling &hmmgpu_backend_ops.queue_space);
 * 3. hmmgpu_job_wait() publishes the rest and rings the doorbell, spins on
 *    the fence for a few microseconds, then sleeps on the queue's wait queue
 *    until the completion signal of the job's last command.
 *
 * The last command of a job carries %HMMGPU_CMD_IRQ. When it completes, the
 * backend calls hmmgpu_queue_signal() (from its MSI-X handler or its
 * worker), which records the fence and the time and wakes the waiters. A job
 * is complete when a signal has seen a fence at or past its last seqno:
 * that is both the fence and the interrupt.
 *
 * A copy (hmmgpu_device_copy()) is one %HMMGPU_CMD_COPY command per channel:
 * a large batch is split over the channels, whose jobs are all submitted
 * before the first is waited for, so the engines run concurrently. The
 * backend prepares the command (&hmmgpu_backend_ops.copy_prepare) once the
 * job has begun and reports which pages it copied when it has ended
 * (&hmmgpu_backend_ops.copy_finish). Copies run on the CPU fault path and
 * must finish to keep the memory they touch consistent, so their waits are
 * not interruptible (they are still bounded by the fence timeout).
 *
 * A wait ends with -ETIMEDOUT after hmmgpu_fence_timeout_ms; the device is
 * then marked halted (or lost when &hmmgpu_backend_ops.alive says it no
 * longer responds). A command that completed with an error makes its job
 * fail with -EIO.
 */

#include <linux/iopoll.h>
#include <linux/lockdep.h>
#include <linux/minmax.h>

#include "hmmgpu_drv.h"

/* How long a waiter spins on the fence before it sleeps. */
#define HMMGPU_SPIN_US		10
/* How often a submitter waiting for ring space looks again. */
#define HMMGPU_SPACE_POLL_US	20
/* A copy is split over channels only into parts of at least this many pages. */
#define HMMGPU_COPY_MIN_PART	64

/*
 * One lock class per queue number: a copy holds the locks of several
 * channels at once, always taken in increasing queue order.
 */
static struct lock_class_key hmmgpu_queue_lock_keys[HMMGPU_MAX_QUEUES];

static unsigned int hmmgpu_fence_timeout(void)
{
	return max(READ_ONCE(hmmgpu_fence_timeout_ms), 1U);
}

/**
 * hmmgpu_queue_init() - initialise a queue of a new device
 * @q: the queue
 * @hdev: its device
 * @index: its number
 */
void hmmgpu_queue_init(struct hmmgpu_queue *q, struct hmmgpu_device *hdev,
		       unsigned int index)
{
	q->hdev = hdev;
	q->index = index;
	mutex_init(&q->lock);
	lockdep_set_class(&q->lock, &hmmgpu_queue_lock_keys[index]);
	spin_lock_init(&q->irq_lock);
	init_waitqueue_head(&q->wq);
	atomic64_set(&q->busy_ns, 0);
}

/**
 * hmmgpu_queue_signal() - report the completion of a flagged command
 * @q: the queue
 *
 * Called by a backend, in any context including hard IRQ, when a command
 * with %HMMGPU_CMD_IRQ has completed. Records the fence and the time, and
 * wakes the waiters of @q.
 */
void hmmgpu_queue_signal(struct hmmgpu_queue *q)
{
	u64 fence = q->hdev->ops->queue_fence(q);
	ktime_t now = ktime_get();	/* after the fence: not before completion */
	unsigned long flags;

	spin_lock_irqsave(&q->irq_lock, flags);
	if (fence > q->irq_fence) {
		q->irq_fence = fence;
		q->irq_time = now;
	}
	spin_unlock_irqrestore(&q->irq_lock, flags);
	wake_up_all(&q->wq);
}

static bool hmmgpu_job_done(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	bool done;

	spin_lock_irq(&q->irq_lock);
	done = q->irq_fence >= job->last_seqno;
	if (done)
		job->complete_time = q->irq_time;
	spin_unlock_irq(&q->irq_lock);
	return done;
}

static bool hmmgpu_queue_stopped(struct hmmgpu_queue *q)
{
	return hmmgpu_device_state(q->hdev) != HMMGPU_STATE_READY;
}

/*
 * The queue made no progress within the fence timeout: find out why, mark
 * the device and say so once.
 */
static int hmmgpu_queue_hung(struct hmmgpu_queue *q, u64 seqno)
{
	struct hmmgpu_device *hdev = q->hdev;
	const struct hmmgpu_backend_ops *ops = hdev->ops;
	enum hmmgpu_state state = HMMGPU_STATE_HALTED;
	u64 fence = ops->queue_fence(q);
	int ret = -ETIMEDOUT;

	if (ops->check && ops->check(hdev))
		ret = -EIO;
	else if (ops->alive && !ops->alive(hdev))
		state = HMMGPU_STATE_LOST;

	dev_err(&hdev->dev,
		"queue %u: seqno %llu not complete after %u ms (fence %llu%s), device %s\n",
		q->index, seqno, hmmgpu_fence_timeout(), fence,
		fence >= seqno ? ", completion interrupt missing" : "",
		state == HMMGPU_STATE_LOST ? "lost" : "halted");
	hmmgpu_device_set_state(hdev, state);
	return ret;
}

static int hmmgpu_queue_wait_space(struct hmmgpu_queue *q)
{
	unsigned int space;
	int ret;

	ret = read_poll_timeout(q->hdev->ops->queue_space, space,
				space || hmmgpu_queue_stopped(q),
				HMMGPU_SPACE_POLL_US,
				hmmgpu_fence_timeout() * USEC_PER_MSEC, false, q);
	if (ret)
		return hmmgpu_queue_hung(q, q->last_seqno);
	if (!space)
		return hmmgpu_device_usable(q->hdev);
	q->space = space;
	return 0;
}

/**
 * hmmgpu_job_begin() - start a job on a queue
 * @q: the queue, locked
 * @job: the job to initialise
 *
 * Return: 0, -EIO when the device has halted, -ENODEV when it is gone.
 */
static int hmmgpu_job_begin(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	struct hmmgpu_device *hdev = q->hdev;
	const struct hmmgpu_backend_ops *ops = hdev->ops;
	int ret;

	lockdep_assert_held(&q->lock);
	memset(job, 0, sizeof(*job));

	ret = hmmgpu_device_usable(hdev);
	if (ret)
		return ret;
	if (ops->check && ops->check(hdev)) {
		hmmgpu_device_set_state(hdev, HMMGPU_STATE_HALTED);
		return -EIO;
	}
	if (ops->queue_errors)
		job->errors = ops->queue_errors(q);
	return 0;
}

/* Publish what the job has written and ring the doorbell. */
static void hmmgpu_job_kick(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	if (!q->pending)
		return;
	if (!job->kicked) {
		job->submit_time = ktime_get();
		job->kicked = true;
	}
	q->hdev->ops->queue_kick(q);
	q->pending = 0;
}

/**
 * hmmgpu_job_emit() - add a command to a job
 * @q: the queue, locked
 * @job: the job
 * @cmd: the command; its seqno is assigned here
 *
 * Return: 0, or the error that stopped the wait for ring space: -ETIMEDOUT,
 * -EIO or -ENODEV.
 */
static int hmmgpu_job_emit(struct hmmgpu_queue *q, struct hmmgpu_job *job,
			   struct hmmgpu_cmd *cmd)
{
	int ret;

	lockdep_assert_held(&q->lock);
	if (!q->space) {
		hmmgpu_job_kick(q, job);
		ret = hmmgpu_queue_wait_space(q);
		if (ret)
			return ret;
	}

	cmd->seqno = ++q->last_seqno;
	if (!job->first_seqno)
		job->first_seqno = cmd->seqno;
	job->last_seqno = cmd->seqno;
	q->hdev->ops->queue_write(q, cmd);
	q->space--;
	q->pending++;
	return 0;
}

/* Spin briefly: a completion that is about to land saves a sleep. */
static void hmmgpu_queue_spin(struct hmmgpu_queue *q, u64 seqno)
{
	ktime_t end = ktime_add_us(ktime_get(), HMMGPU_SPIN_US);

	while (q->hdev->ops->queue_fence(q) < seqno &&
	       ktime_before(ktime_get(), end))
		cpu_relax();
}

static int hmmgpu_job_check(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	const struct hmmgpu_backend_ops *ops = q->hdev->ops;

	if (ops->queue_errors && ops->queue_errors(q) != job->errors)
		return -EIO;
	return 0;
}

/**
 * __hmmgpu_job_wait() - submit the rest of a job and wait for its completion
 * @q: the queue, locked
 * @job: the job, with at least one command whose last carries
 *	%HMMGPU_CMD_IRQ
 * @intr: whether a signal ends the wait
 *
 * Return: 0 when every command completed without error; -EIO when one
 * failed or the device halted; -ETIMEDOUT when the job did not complete
 * within the fence timeout; -ENODEV when the device is gone; -EINTR on a
 * signal when @intr (the commands still complete).
 */
static int __hmmgpu_job_wait(struct hmmgpu_queue *q, struct hmmgpu_job *job,
			     bool intr)
{
	unsigned long timeout = msecs_to_jiffies(hmmgpu_fence_timeout());
	long ret;

	lockdep_assert_held(&q->lock);
	hmmgpu_job_kick(q, job);
	hmmgpu_queue_spin(q, job->last_seqno);

	if (intr)
		ret = wait_event_interruptible_timeout(q->wq,
						       hmmgpu_job_done(q, job) ||
						       hmmgpu_queue_stopped(q),
						       timeout);
	else
		ret = wait_event_timeout(q->wq, hmmgpu_job_done(q, job) ||
					 hmmgpu_queue_stopped(q), timeout);
	if (ret < 0)
		return -EINTR;
	if (hmmgpu_job_done(q, job))
		return hmmgpu_job_check(q, job);
	if (!ret)
		return hmmgpu_queue_hung(q, job->last_seqno);
	return hmmgpu_device_usable(q->hdev);
}

static int hmmgpu_job_wait(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	return __hmmgpu_job_wait(q, job, true);
}

static u64 hmmgpu_job_elapsed_ns(const struct hmmgpu_job *job)
{
	return max(ktime_to_ns(ktime_sub(job->complete_time,
					 job->submit_time)), 0LL);
}

/**
 * hmmgpu_queue_nop() - run NOP commands on a queue and time them
 * @q: the queue
 * @count: how many NOPs, at least 1; only the last asks for a signal
 * @elapsed_ns: out, time from the first doorbell to the completion signal
 *	of the last NOP
 *
 * Context: process context; takes @q->lock and sleeps.
 * Return: 0 or an error of hmmgpu_job_wait(); -EINTR also when a signal
 * arrives while waiting for @q->lock.
 */
int hmmgpu_queue_nop(struct hmmgpu_queue *q, unsigned int count,
		     u64 *elapsed_ns)
{
	struct hmmgpu_cmd cmd = { .op = HMMGPU_CMD_NOP };
	struct hmmgpu_job job;
	int ret;

	if (WARN_ON_ONCE(!count))
		return -EINVAL;
	if (mutex_lock_interruptible(&q->lock))
		return -EINTR;

	ret = hmmgpu_job_begin(q, &job);
	for (; !ret && count; count--) {
		cmd.flags = count == 1 ? HMMGPU_CMD_IRQ : 0;
		ret = hmmgpu_job_emit(q, &job, &cmd);
	}
	if (!ret)
		ret = hmmgpu_job_wait(q, &job);
	if (!ret)
		*elapsed_ns = hmmgpu_job_elapsed_ns(&job);

	mutex_unlock(&q->lock);
	return ret;
}

/**
 * struct hmmgpu_copy_part - the share of one channel in a copy
 * @q: the channel's queue
 * @job: its job
 * @copy: its command's copy
 * @first: index of its first page in the whole copy
 * @prepared: &hmmgpu_backend_ops.copy_prepare succeeded
 * @err: the first error of the part
 */
struct hmmgpu_copy_part {
	struct hmmgpu_queue *q;
	struct hmmgpu_job job;
	struct hmmgpu_copy copy;
	unsigned int first;
	bool prepared;
	int err;
};

/* Lock the part's queue and submit its command; the queue stays locked. */
static void hmmgpu_copy_submit(struct hmmgpu_copy_part *p)
{
	struct hmmgpu_cmd cmd = {
		.op = HMMGPU_CMD_COPY,
		.flags = HMMGPU_CMD_IRQ,
		.copy = &p->copy,
	};
	struct hmmgpu_queue *q = p->q;

	mutex_lock(&q->lock);
	p->err = hmmgpu_job_begin(q, &p->job);
	if (p->err)
		return;
	p->err = q->hdev->ops->copy_prepare(q, &p->copy);
	if (p->err)
		return;
	p->prepared = true;
	p->err = hmmgpu_job_emit(q, &p->job, &cmd);
	if (!p->err)
		hmmgpu_job_kick(q, &p->job);
}

/* Wait for the part, record its failed pages and unlock its queue. */
static void hmmgpu_copy_complete(struct hmmgpu_copy_part *p,
				 unsigned long *failed)
{
	struct hmmgpu_queue *q = p->q;

	if (p->prepared) {
		if (!p->err) {
			p->err = __hmmgpu_job_wait(q, &p->job, false);
			if (!p->err)
				atomic64_add(hmmgpu_job_elapsed_ns(&p->job),
					     &q->busy_ns);
		}
		q->hdev->ops->copy_finish(q, &p->copy, p->err);
	}
	if (p->copy.done < p->copy.npages) {
		atomic64_add(p->copy.npages - p->copy.done,
			     &q->hdev->stats.copy_errors);
		bitmap_set(failed, p->first + p->copy.done,
			   p->copy.npages - p->copy.done);
		if (!p->err)
			p->err = -EIO;
	}
	mutex_unlock(&q->lock);
}

/* How many channels a copy of @npages pages uses, and the first one. */
static unsigned int hmmgpu_copy_channels(struct hmmgpu_device *hdev,
					 unsigned int npages,
					 unsigned int *first)
{
	unsigned int n = DIV_ROUND_UP(npages, HMMGPU_COPY_MIN_PART);

	if (!hdev->num_channels) {
		*first = 0;
		return 1;
	}
	n = min(n, hdev->num_channels);
	if (n > 1)
		*first = 1;
	else
		*first = 1 + atomic_inc_return(&hdev->copy_rr) %
			     hdev->num_channels;
	return n;
}

/**
 * hmmgpu_device_copy() - copy pages between system memory and VRAM
 * @hdev: the device whose copy engine copies and whose VRAM is addressed
 * @dir: direction
 * @sys: @npages system pages
 * @vram: @npages page-aligned offsets into the VRAM of @hdev
 * @npages: pages, 1..%HMMGPU_COPY_MAX_PAGES
 * @failed: bitmap of @npages bits; the bits of the pages that were not
 *	copied are set, the others are left alone
 *
 * Splits the copy over the channels, submits every part, then waits for
 * each. The waits are not interruptible.
 *
 * Context: process context, may sleep up to the fence timeout; takes the
 * channels' queue locks in increasing order.
 * Return: 0 when every page was copied; otherwise the first error: -EIO
 * (a page failed or the device halted), -ETIMEDOUT, -ENODEV, -ENOMEM.
 */
int hmmgpu_device_copy(struct hmmgpu_device *hdev, enum hmmgpu_copy_dir dir,
		       struct page **sys, const u64 *vram, unsigned int npages,
		       unsigned long *failed)
{
	struct hmmgpu_copy_part *parts;
	unsigned int n, first, i, per;
	int ret = 0;

	if (WARN_ON_ONCE(!npages || npages > HMMGPU_COPY_MAX_PAGES))
		return -EINVAL;
	atomic64_inc(&hdev->stats.copy_batches);
	n = hmmgpu_copy_channels(hdev, npages, &first);
	parts = kcalloc(n, sizeof(*parts), GFP_KERNEL);
	if (!parts) {
		atomic64_add(npages, &hdev->stats.copy_errors);
		bitmap_set(failed, 0, npages);
		return -ENOMEM;
	}

	per = DIV_ROUND_UP(npages, n);
	for (i = 0; i < n; i++) {
		struct hmmgpu_copy_part *p = &parts[i];

		p->q = hmmgpu_queue_get(hdev, first + i);
		p->first = i * per;
		p->copy.dir = dir;
		p->copy.npages = min(per, npages - p->first);
		p->copy.sys = sys + p->first;
		p->copy.vram = vram + p->first;
		hmmgpu_copy_submit(p);
	}
	for (i = 0; i < n; i++) {
		hmmgpu_copy_complete(&parts[i], failed);
		if (!ret)
			ret = parts[i].err;
	}
	kfree(parts);
	return ret;
}
