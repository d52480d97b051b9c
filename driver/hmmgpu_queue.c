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
 * A job is a batch of commands for one queue. It is written into the ring
 * with the queue's lock held, so the commands of a job are consecutive, and
 * waited for without it, so several jobs of one queue can be in flight:
 *
 * 1. hmmgpu_job_begin() checks that the device runs;
 * 2. hmmgpu_job_emit() writes one command, first waiting for ring space if
 *    the ring is full (publishing what the job has written so far, then
 *    polling). Its first command lists the job on the queue;
 * 3. hmmgpu_job_kick() publishes the rest and rings the doorbell; the lock
 *    is dropped;
 * 4. hmmgpu_job_wait() spins on the fence for a few microseconds, then
 *    sleeps on the queue's wait queue until the completion signal of the
 *    job's last command, and reads the results of its commands
 *    (&hmmgpu_backend_ops.queue_status);
 * 5. hmmgpu_job_end() takes the job off the queue.
 *
 * Results live in the ring slots (a descriptor's status, the words the
 * engine writes back), so a slot is not only busy until the engine has
 * completed its command but until the job that wrote it has read the
 * result: a listed job holds its slots from &hmmgpu_job.held_seqno on, and
 * the ring space a writer sees is what both the engine and the oldest job
 * with results left to read have released. A job larger than the ring
 * reads its own results while it waits for space. A writer waiting for
 * space also reads, on their owners' behalf, the results of complete jobs
 * of hmmgpu_queue_submit(), which keep them in the job: a launch that its
 * process waits for only later, or never, would otherwise stop the ring
 * going round and block every later command of the queue.
 *
 * The last command of a job carries %HMMGPU_CMD_IRQ. When it completes, the
 * backend calls hmmgpu_queue_signal() (from its MSI-X handler or its
 * worker), which records the fence and the time and wakes the waiters. A job
 * is complete when a signal has seen a fence at or past its last seqno:
 * that is both the fence and the interrupt.
 *
 * A copy (hmmgpu_device_copy_submit()) is one %HMMGPU_CMD_COPY command per
 * channel: a large batch is split over the channels, whose jobs are all
 * submitted before the first is waited for (hmmgpu_device_copy_wait()), so
 * the engines run concurrently, and the caller can prepare its next batch
 * meanwhile. The backend prepares the command
 * (&hmmgpu_backend_ops.copy_prepare) once the job has begun and reports
 * which pages it copied when it has been waited for
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
 * One lock class per queue number, so that lockdep reports name the queue
 * (no path holds two queue locks at once).
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
	spin_lock_init(&q->job_lock);
	INIT_LIST_HEAD(&q->jobs);
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
 * Whether a wait that ran out of time at @fence found the queue hung: it
 * made no progress since @*last (the fence where the previous wait began,
 * updated), and the command it executes is not one that may legitimately
 * run long (&hmmgpu_job.unbounded: a kernel launch, possibly stalled on
 * faults that the fault worker services). A launch ahead of a NOP, or of a
 * full ring, must not make the device look hung to everyone.
 */
static bool hmmgpu_queue_stuck(struct hmmgpu_queue *q, u64 *last)
{
	u64 fence = q->hdev->ops->queue_fence(q);
	struct hmmgpu_job *job;
	bool stuck = true;

	if (fence != *last) {
		*last = fence;
		return false;
	}
	spin_lock(&q->job_lock);
	list_for_each_entry(job, &q->jobs, link) {
		if (job->first_seqno <= fence + 1 && fence + 1 <= job->last_seqno) {
			stuck = !job->unbounded;
			break;
		}
	}
	spin_unlock(&q->job_lock);
	return stuck;
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

/*
 * Slots the engine has released (&hmmgpu_backend_ops.queue_space) and whose
 * results no job still has to read: the oldest listed job that has results
 * left to read holds every slot from its @held_seqno on.
 */
static unsigned int hmmgpu_queue_free(struct hmmgpu_queue *q, bool *engine)
{
	unsigned int space = q->hdev->ops->queue_space(q);
	struct hmmgpu_job *job;
	u64 held;

	*engine = space;
	spin_lock(&q->job_lock);
	list_for_each_entry(job, &q->jobs, link) {
		if (job->held_seqno > job->last_seqno)
			continue;	/* read, waiting for its owner */
		held = q->last_seqno + 1 - job->held_seqno;
		space = min_t(u64, space,
			      held < q->entries ? q->entries - held : 0);
		break;
	}
	spin_unlock(&q->job_lock);
	return space;
}

/* hmmgpu_job_harvest() with @q->job_lock held. */
static void __hmmgpu_job_harvest(struct hmmgpu_queue *q,
				 struct hmmgpu_job *job, u64 fence)
{
	const struct hmmgpu_backend_ops *ops = q->hdev->ops;
	u64 s, end = min(fence, job->last_seqno);

	lockdep_assert_held(&q->job_lock);
	if (!job->first_seqno)
		return;

	for (s = job->held_seqno; s <= end && ops->queue_status; s++) {
		int err = ops->queue_status(q, s, s == job->last_seqno ?
					    &job->value : NULL);

		if (err && !job->err)
			job->err = err;
	}
	if (end + 1 > job->held_seqno)
		job->held_seqno = end + 1;
}

/*
 * Read the results of the job's commands the engine has completed, up to
 * seqno @fence, and release their slots. Under @q->job_lock: a submitter
 * waiting for ring space may read them too (hmmgpu_queue_harvest_done()).
 */
static void hmmgpu_job_harvest(struct hmmgpu_queue *q, struct hmmgpu_job *job,
			       u64 fence)
{
	spin_lock(&q->job_lock);
	__hmmgpu_job_harvest(q, job, fence);
	spin_unlock(&q->job_lock);
}

/*
 * Read the results of the complete jobs of hmmgpu_queue_submit() on their
 * owners' behalf, keeping them in the jobs: a launch whose process has not
 * waited for it yet must not keep the ring from going round.
 */
static void hmmgpu_queue_harvest_done(struct hmmgpu_queue *q, u64 fence)
{
	struct hmmgpu_job *job;

	spin_lock(&q->job_lock);
	list_for_each_entry(job, &q->jobs, link) {
		if (job->last_seqno > fence)
			break;
		if (job->results_in_job)
			__hmmgpu_job_harvest(q, job, fence);
	}
	spin_unlock(&q->job_lock);
}

/* Ring space for @job, once the results that can be read have been. */
static unsigned int hmmgpu_job_space(struct hmmgpu_queue *q,
				     struct hmmgpu_job *job, bool *engine)
{
	u64 fence = q->hdev->ops->queue_fence(q);

	hmmgpu_job_harvest(q, job, fence);
	hmmgpu_queue_harvest_done(q, fence);
	return hmmgpu_queue_free(q, engine);
}

/*
 * Wait until the queue can take a command of @job. Only the engine not
 * releasing slots counts as a hang: slots held by other jobs, whose waiters
 * were woken, are released soon; and an engine that makes progress or runs
 * a launch is not hung (hmmgpu_queue_stuck()). Behind a long launch a
 * fatal signal ends the wait.
 */
static int hmmgpu_queue_wait_space(struct hmmgpu_queue *q,
				   struct hmmgpu_job *job)
{
	u64 last = q->hdev->ops->queue_fence(q);
	unsigned int space;
	bool engine;
	int ret;

	for (;;) {
		ret = read_poll_timeout(hmmgpu_job_space, space,
					space || hmmgpu_queue_stopped(q),
					HMMGPU_SPACE_POLL_US,
					hmmgpu_fence_timeout() * USEC_PER_MSEC,
					false, q, job, &engine);
		if (!ret)
			break;
		if (!engine && hmmgpu_queue_stuck(q, &last))
			return hmmgpu_queue_hung(q, q->last_seqno);
		if (fatal_signal_pending(current))
			return -EINTR;
	}
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
	INIT_LIST_HEAD(&job->link);

	ret = hmmgpu_device_usable(hdev);
	if (ret)
		return ret;
	if (ops->check && ops->check(hdev)) {
		hmmgpu_device_set_state(hdev, HMMGPU_STATE_HALTED);
		return -EIO;
	}
	return 0;
}

/* Publish what the job has written and ring the doorbell. */
static void hmmgpu_job_kick(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	lockdep_assert_held(&q->lock);
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
 * The job's first command lists the job on the queue: from then on it holds
 * the slots of its commands until it has read their results.
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
		ret = hmmgpu_queue_wait_space(q, job);
		if (ret)
			return ret;
	}

	cmd->seqno = ++q->last_seqno;
	job->last_seqno = cmd->seqno;
	if (!job->first_seqno) {
		job->first_seqno = cmd->seqno;
		job->held_seqno = cmd->seqno;
		spin_lock(&q->job_lock);
		list_add_tail(&job->link, &q->jobs);
		spin_unlock(&q->job_lock);
	}
	q->hdev->ops->queue_write(q, cmd);
	q->space--;
	q->pending++;
	return 0;
}

/**
 * hmmgpu_job_end() - release a job's slots
 * @q: the queue
 * @job: the job, waited for (or abandoned)
 *
 * After this the job's command slots may be reused: the results of its
 * commands can no longer be read.
 */
static void hmmgpu_job_end(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	bool listed;

	spin_lock(&q->job_lock);
	listed = !list_empty(&job->link);
	list_del_init(&job->link);
	spin_unlock(&q->job_lock);
	if (listed)
		wake_up_all(&q->wq);
}

/* Spin briefly: a completion that is about to land saves a sleep. */
static void hmmgpu_queue_spin(struct hmmgpu_queue *q, u64 seqno)
{
	ktime_t end = ktime_add_us(ktime_get(), HMMGPU_SPIN_US);

	while (q->hdev->ops->queue_fence(q) < seqno &&
	       ktime_before(ktime_get(), end))
		cpu_relax();
}

/**
 * hmmgpu_job_wait() - wait for the completion of a kicked job
 * @q: the queue, locked or not
 * @job: the job, with at least one command whose last carries
 *	%HMMGPU_CMD_IRQ, kicked
 * @intr: whether a signal ends the wait
 *
 * Reads the results of the job's commands once it has completed; the job
 * still holds its slots (hmmgpu_job_end()).
 *
 * Return: 0 when every command completed without error; -EIO when one
 * failed or the device halted; -ETIMEDOUT when the queue made no progress
 * for the fence timeout without running a launch (hmmgpu_queue_stuck());
 * -ENODEV when the device is gone; -EINTR on a signal when @intr (the
 * commands still complete).
 */
static int hmmgpu_job_wait(struct hmmgpu_queue *q, struct hmmgpu_job *job,
			   bool intr)
{
	unsigned long timeout = msecs_to_jiffies(hmmgpu_fence_timeout());
	u64 last = q->hdev->ops->queue_fence(q);
	long ret;

	hmmgpu_queue_spin(q, job->last_seqno);
	for (;;) {
		if (intr)
			ret = wait_event_interruptible_timeout(q->wq,
							       hmmgpu_job_done(q, job) ||
							       hmmgpu_queue_stopped(q),
							       timeout);
		else
			ret = wait_event_timeout(q->wq,
						 hmmgpu_job_done(q, job) ||
						 hmmgpu_queue_stopped(q),
						 timeout);
		if (ret < 0)
			return -EINTR;
		if (ret || hmmgpu_job_done(q, job))
			break;
		/* Out of time: hung, unless it moves or runs a launch. */
		if (hmmgpu_queue_stuck(q, &last))
			return hmmgpu_queue_hung(q, job->last_seqno);
	}
	if (hmmgpu_job_done(q, job)) {
		hmmgpu_job_harvest(q, job, job->last_seqno);
		return job->err ? -EIO : 0;
	}
	return hmmgpu_device_usable(q->hdev);
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
 * Context: process context; takes @q->lock while it submits, and sleeps.
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
		hmmgpu_job_kick(q, &job);
	mutex_unlock(&q->lock);

	if (!ret)
		ret = hmmgpu_job_wait(q, &job, true);
	if (!ret)
		*elapsed_ns = hmmgpu_job_elapsed_ns(&job);
	hmmgpu_job_end(q, &job);
	return ret;
}

/**
 * struct hmmgpu_copy_part - the share of one channel in a copy
 * @q: the channel's queue
 * @job: its job
 * @copy: its command's copy
 * @first: index of its first page in the whole copy
 * @prepared: &hmmgpu_backend_ops.copy_prepare succeeded
 * @written: the command is in the ring
 * @err: the first error of the part
 */
struct hmmgpu_copy_part {
	struct hmmgpu_queue *q;
	struct hmmgpu_job job;
	struct hmmgpu_copy copy;
	unsigned int first;
	bool prepared;
	bool written;
	int err;
};

/* Submit the part's command under its queue's lock. */
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
		goto out_unlock;
	p->err = q->hdev->ops->copy_prepare(q, &p->copy);
	if (p->err)
		goto out_unlock;
	p->prepared = true;
	p->err = hmmgpu_job_emit(q, &p->job, &cmd);
	if (p->err)
		goto out_unlock;
	p->written = true;
	hmmgpu_job_kick(q, &p->job);
out_unlock:
	mutex_unlock(&q->lock);
}

/* Wait for the part and record its failed pages. */
static void hmmgpu_copy_complete(struct hmmgpu_copy_part *p,
				 unsigned long *failed, unsigned int base)
{
	struct hmmgpu_queue *q = p->q;

	if (p->written) {
		p->err = hmmgpu_job_wait(q, &p->job, false);
		if (!p->err)
			atomic64_add(hmmgpu_job_elapsed_ns(&p->job),
				     &q->busy_ns);
	}
	if (p->prepared)
		q->hdev->ops->copy_finish(q, &p->copy,
					  p->written ? p->err : -ECANCELED);
	hmmgpu_job_end(q, &p->job);
	if (p->copy.done < p->copy.npages) {
		atomic64_add(p->copy.npages - p->copy.done,
			     &q->hdev->stats.copy_errors);
		bitmap_set(failed, base + p->first + p->copy.done,
			   p->copy.npages - p->copy.done);
		if (!p->err)
			p->err = -EIO;
	}
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
 * hmmgpu_device_copy_submit() - start copying pages into or out of VRAM
 * @hdev: the device whose copy engine copies and whose VRAM is addressed
 * @copy: what to copy: &hmmgpu_copy.dir, .npages (1..%HMMGPU_COPY_MAX_PAGES)
 *	and the page arrays of the direction; the other fields are ignored
 * @op: the copy in flight, initialised here
 *
 * Splits the copy over the channels and submits every part; each channel's
 * lock is held only while its part is written. The arrays of @copy must
 * stay valid until hmmgpu_device_copy_wait(), which must always follow,
 * also when the submission failed (it reports the failure).
 *
 * Context: process context, may sleep (allocations, ring space).
 */
void hmmgpu_device_copy_submit(struct hmmgpu_device *hdev,
			       const struct hmmgpu_copy *copy,
			       struct hmmgpu_copy_op *op)
{
	unsigned int npages = copy->npages, n, first, i, per;

	memset(op, 0, sizeof(*op));
	op->hdev = hdev;
	op->npages = npages;
	if (WARN_ON_ONCE(!npages || npages > HMMGPU_COPY_MAX_PAGES)) {
		op->err = -EINVAL;
		return;
	}
	atomic64_inc(&hdev->stats.copy_batches);
	n = hmmgpu_copy_channels(hdev, npages, &first);
	op->parts = kcalloc(n, sizeof(*op->parts), GFP_KERNEL);
	if (!op->parts) {
		op->err = -ENOMEM;
		return;
	}
	op->nparts = n;

	per = DIV_ROUND_UP(npages, n);
	for (i = 0; i < n; i++) {
		struct hmmgpu_copy_part *p = &op->parts[i];

		p->q = hmmgpu_queue_get(hdev, first + i);
		p->first = i * per;
		p->copy = (struct hmmgpu_copy) {
			.dir = copy->dir,
			.npages = min(per, npages - p->first),
			.vram = copy->vram + p->first,
			.peer = copy->peer,
		};
		if (copy->dir == HMMGPU_COPY_FROM_PEER)
			p->copy.peer_vram = copy->peer_vram + p->first;
		else
			p->copy.sys = copy->sys + p->first;
		hmmgpu_copy_submit(p);
	}
}

/**
 * hmmgpu_device_copy_wait() - wait for a copy started by
 *	hmmgpu_device_copy_submit()
 * @op: the copy
 * @failed: bitmap; for each page i of the copy that was not copied, bit
 *	@base + i is set; the other bits are left alone
 * @base: bit of the copy's first page in @failed
 *
 * The waits are not interruptible: copies run on the CPU fault path and
 * must end to keep the memory they touch consistent (they are still
 * bounded by the fence timeout).
 *
 * Context: process context, may sleep up to the fence timeout.
 * Return: 0 when every page was copied; otherwise the first error: -EIO
 * (a page failed or the device halted), -ETIMEDOUT, -ENODEV, -ENOMEM,
 * -EINVAL.
 */
int hmmgpu_device_copy_wait(struct hmmgpu_copy_op *op, unsigned long *failed,
			    unsigned int base)
{
	unsigned int i;
	int ret = op->err;

	if (ret) {
		if (op->npages)
			atomic64_add(op->npages, &op->hdev->stats.copy_errors);
		bitmap_set(failed, base, op->npages);
		return ret;
	}
	for (i = 0; i < op->nparts; i++) {
		hmmgpu_copy_complete(&op->parts[i], failed, base);
		if (!ret)
			ret = op->parts[i].err;
	}
	kfree(op->parts);
	op->parts = NULL;
	return ret;
}

/**
 * hmmgpu_queue_quiesce() - wait until no job holds a queue
 * @q: the queue of a device no longer READY
 *
 * A job that began before the state changed has ended afterwards; no new
 * one begins.
 *
 * Context: process context, sleeps.
 */
void hmmgpu_queue_quiesce(struct hmmgpu_queue *q)
{
	mutex_lock(&q->lock);
	mutex_unlock(&q->lock);
	wait_event(q->wq, list_empty_careful(&q->jobs));
}

/**
 * hmmgpu_queue_submit() - submit one command as a job
 * @q: the queue
 * @cmd: the command; %HMMGPU_CMD_IRQ is added
 * @job: the job, initialised here; once this returned 0 it must be ended
 *	with hmmgpu_queue_release()
 *
 * Context: process context; takes @q->lock, may wait for ring space.
 * Return: 0, -EIO when the device has halted, -ENODEV when it is gone,
 * -ETIMEDOUT when no ring space became free.
 */
int hmmgpu_queue_submit(struct hmmgpu_queue *q, struct hmmgpu_cmd *cmd,
			struct hmmgpu_job *job)
{
	int ret;

	cmd->flags |= HMMGPU_CMD_IRQ;
	mutex_lock(&q->lock);
	ret = hmmgpu_job_begin(q, job);
	job->results_in_job = true;
	job->unbounded = cmd->op == HMMGPU_CMD_LAUNCH;
	if (!ret)
		ret = hmmgpu_job_emit(q, job, cmd);
	if (!ret)
		hmmgpu_job_kick(q, job);
	mutex_unlock(&q->lock);
	if (ret)
		hmmgpu_job_end(q, job);
	return ret;
}

/**
 * hmmgpu_queue_poll() - wait a bounded time for a job of one command
 * @q: the queue
 * @job: the job, from hmmgpu_queue_submit()
 * @timeout: jiffies to wait at most, 0 only looks
 * @status: out, the command's result: 0 or its error (see
 *	&hmmgpu_backend_ops.queue_status)
 * @value: out, the command's result word
 *
 * Unlike the waits of the core's own jobs, running out of time here says
 * nothing about the device: the command (a launch) may just be long.
 *
 * Context: process context, sleeps interruptibly.
 * Return: 0 when the command has completed; -ETIME when it has not in
 * time, -EINTR on a signal, -EIO or -ENODEV when the device stopped.
 */
int hmmgpu_queue_poll(struct hmmgpu_queue *q, struct hmmgpu_job *job,
		      unsigned long timeout, int *status, u64 *value)
{
	long ret;

	ret = wait_event_interruptible_timeout(q->wq, hmmgpu_job_done(q, job) ||
					       hmmgpu_queue_stopped(q),
					       timeout);
	if (ret < 0)
		return -EINTR;
	if (!hmmgpu_job_done(q, job))
		return hmmgpu_queue_stopped(q) ? hmmgpu_device_usable(q->hdev) :
						 -ETIME;
	hmmgpu_job_harvest(q, job, job->last_seqno);
	*status = job->err;
	*value = job->value;
	return 0;
}

/**
 * hmmgpu_queue_release() - end a job of hmmgpu_queue_submit()
 * @q: the queue
 * @job: the job, complete or abandoned
 */
void hmmgpu_queue_release(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	hmmgpu_job_end(q, job);
}

/**
 * hmmgpu_queue_exec() - run one command and wait for it
 * @q: the queue
 * @cmd: the command
 *
 * The wait is not interruptible and bounded by the fence timeout (a
 * timeout marks the device halted or lost).
 *
 * Context: process context, sleeps.
 * Return: 0 or the command's error, or an error of the submission or the
 * wait.
 */
int hmmgpu_queue_exec(struct hmmgpu_queue *q, struct hmmgpu_cmd *cmd)
{
	struct hmmgpu_job job;
	int ret;

	ret = hmmgpu_queue_submit(q, cmd, &job);
	if (ret)
		return ret;
	ret = hmmgpu_job_wait(q, &job, false);
	hmmgpu_job_end(q, &job);
	return ret;
}

/**
 * hmmgpu_queue_job_done() - whether a submitted job has completed
 * @q: the queue
 * @job: the job, from hmmgpu_queue_submit()
 *
 * Context: any but hard IRQ.
 * Return: true once its completion was signalled.
 */
bool hmmgpu_queue_job_done(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	return hmmgpu_job_done(q, job);
}
