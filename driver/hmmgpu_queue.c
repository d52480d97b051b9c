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
	spin_lock_init(&q->irq_lock);
	init_waitqueue_head(&q->wq);
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
 * hmmgpu_job_wait() - submit the rest of a job and wait for its completion
 * @q: the queue, locked
 * @job: the job, with at least one command whose last carries
 *	%HMMGPU_CMD_IRQ
 *
 * Return: 0 when every command completed without error; -EIO when one
 * failed or the device halted; -ETIMEDOUT when the job did not complete
 * within the fence timeout; -ENODEV when the device is gone; -EINTR on a
 * signal (the commands still complete).
 */
static int hmmgpu_job_wait(struct hmmgpu_queue *q, struct hmmgpu_job *job)
{
	long ret;

	lockdep_assert_held(&q->lock);
	hmmgpu_job_kick(q, job);
	hmmgpu_queue_spin(q, job->last_seqno);

	ret = wait_event_interruptible_timeout(q->wq,
					       hmmgpu_job_done(q, job) ||
					       hmmgpu_queue_stopped(q),
					       msecs_to_jiffies(hmmgpu_fence_timeout()));
	if (ret < 0)
		return -EINTR;
	if (hmmgpu_job_done(q, job))
		return hmmgpu_job_check(q, job);
	if (!ret)
		return hmmgpu_queue_hung(q, job->last_seqno);
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
