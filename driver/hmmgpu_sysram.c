// SPDX-License-Identifier: GPL-2.0
/*
 * hmmgpu: backend without hardware: queues run by a kernel worker
 */

/**
 * DOC: System-RAM devices
 *
 * A sysram device behaves like a GPU whose engines are kernel workers, so
 * that the core, the user interface and the tests run on machines without
 * the emulator. The module creates ``sysram_devices`` platform devices named
 * hmmgpu-sysram.<i>; this platform driver binds to them.
 *
 * Each queue has a software ring of &struct hmmgpu_cmd and a work item on
 * the device's unbound workqueue. A kick publishes the ring's head (release)
 * and queues the work; the worker executes the published commands in order,
 * publishes each one's seqno as the fence and the new tail (release), and
 * calls hmmgpu_queue_signal() for commands flagged %HMMGPU_CMD_IRQ, which
 * stands in for the interrupt. Work items of different queues run
 * concurrently; one work item never runs concurrently with itself.
 *
 * Its VRAM (``sysram_vram_mb``) is backed by system pages, allocated per
 * chunk when the VRAM allocator populates the chunk
 * (&hmmgpu_backend_ops.chunk_alloc) and freed with it. The worker is the
 * copy engine: a %HMMGPU_CMD_COPY copies each page with copy_highpage()
 * between the system page and the backing page of its VRAM offset, and
 * never fails.
 */

#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "hmmgpu_drv.h"

#define HMMGPU_SYSRAM_DRIVER		"hmmgpu-sysram"
#define HMMGPU_SYSRAM_RING_ENTRIES	256

/**
 * struct hmmgpu_sysram_queue - a queue executed by a worker
 * @q: the core's queue
 * @wq: the device's workqueue
 * @work: executes the published commands
 * @head: commands written; protected by the core's queue lock
 * @published: commands the worker may execute; written with release by a
 *	kick, read with acquire by the worker
 * @tail: commands completed; written with release by the worker only
 * @fence: seqno of the last completed command; written with release by the
 *	worker only
 * @ring: the commands; slot i is owned by the worker from the kick that
 *	publishes it until @tail passes it
 */
struct hmmgpu_sysram_queue {
	struct hmmgpu_queue *q;
	struct workqueue_struct *wq;
	struct work_struct work;
	u32 head;
	u32 published;
	u32 tail;
	u64 fence;
	struct hmmgpu_cmd ring[HMMGPU_SYSRAM_RING_ENTRIES];
};

/**
 * struct hmmgpu_sysram - one sysram device
 * @hdev: its core device
 * @wq: runs the queues' work items
 * @num_chunks: entries of @backing
 * @backing: per VRAM chunk, its %HMMGPU_CHUNK_PAGES system pages, or NULL
 *	while the chunk is not populated; set before the chunk's pages are
 *	used, cleared after
 * @num_queues: entries of @queues
 * @queues: the queues
 */
struct hmmgpu_sysram {
	struct hmmgpu_device *hdev;
	struct workqueue_struct *wq;
	unsigned int num_chunks;
	struct page ***backing;
	unsigned int num_queues;
	struct hmmgpu_sysram_queue queues[] __counted_by(num_queues);
};

static struct platform_device **hmmgpu_sysram_pdevs;
static unsigned int hmmgpu_sysram_count;

static struct hmmgpu_sysram_queue *to_sysram_queue(struct hmmgpu_queue *q)
{
	return q->priv;
}

static struct page *hmmgpu_sysram_vram_page(struct hmmgpu_sysram *sys,
					    u64 offset)
{
	u64 chunk = div_u64(offset, HMMGPU_CHUNK_SIZE);

	return sys->backing[chunk][(offset % HMMGPU_CHUNK_SIZE) >> PAGE_SHIFT];
}

static void hmmgpu_sysram_copy(struct hmmgpu_sysram *sys,
			       const struct hmmgpu_copy *copy)
{
	unsigned int i;

	for (i = 0; i < copy->npages; i++) {
		struct page *vpage = hmmgpu_sysram_vram_page(sys, copy->vram[i]);

		if (copy->dir == HMMGPU_COPY_TO_VRAM)
			copy_highpage(vpage, copy->sys[i]);
		else
			copy_highpage(copy->sys[i], vpage);
	}
}

static void hmmgpu_sysram_exec(struct hmmgpu_sysram *sys,
			       const struct hmmgpu_cmd *cmd)
{
	switch (cmd->op) {
	case HMMGPU_CMD_NOP:
		break;
	case HMMGPU_CMD_COPY:
		hmmgpu_sysram_copy(sys, cmd->copy);
		break;
	case HMMGPU_CMD_LAUNCH:
	case HMMGPU_CMD_CTX_BIND:
	case HMMGPU_CMD_TLB_INVALIDATE:
	case HMMGPU_CMD_FAULT_REPLAY:
	case HMMGPU_CMD_FAULT_CANCEL:
		/* the core sends these only with HMMGPU_CAP_COMPUTE */
		WARN_ON_ONCE(1);
		break;
	}
}

static void hmmgpu_sysram_work(struct work_struct *work)
{
	struct hmmgpu_sysram_queue *sq =
		container_of(work, struct hmmgpu_sysram_queue, work);
	/* Pairs with the release in kick: the commands before head are written. */
	u32 head = smp_load_acquire(&sq->published);
	u32 tail = sq->tail;

	while (tail != head) {
		const struct hmmgpu_cmd *cmd =
			&sq->ring[tail % HMMGPU_SYSRAM_RING_ENTRIES];
		bool signal = cmd->flags & HMMGPU_CMD_IRQ;

		hmmgpu_sysram_exec(sq->q->hdev->priv, cmd);
		/* The command's effects are visible before its fence. */
		smp_store_release(&sq->fence, cmd->seqno);
		/* Done reading the slot: the submitter may reuse it. */
		smp_store_release(&sq->tail, ++tail);
		if (signal)
			hmmgpu_queue_signal(sq->q);
	}
}

/* backend operations */

static unsigned int hmmgpu_sysram_queue_space(struct hmmgpu_queue *q)
{
	struct hmmgpu_sysram_queue *sq = to_sysram_queue(q);
	/* Pairs with the worker's tail release: freed slots are unread. */
	u32 tail = smp_load_acquire(&sq->tail);

	return HMMGPU_SYSRAM_RING_ENTRIES - (sq->head - tail);
}

static void hmmgpu_sysram_queue_write(struct hmmgpu_queue *q,
				      const struct hmmgpu_cmd *cmd)
{
	struct hmmgpu_sysram_queue *sq = to_sysram_queue(q);

	lockdep_assert_held(&q->lock);
	sq->ring[sq->head % HMMGPU_SYSRAM_RING_ENTRIES] = *cmd;
	sq->head++;
}

static void hmmgpu_sysram_queue_kick(struct hmmgpu_queue *q)
{
	struct hmmgpu_sysram_queue *sq = to_sysram_queue(q);

	lockdep_assert_held(&q->lock);
	/* Commands are written before the worker sees them published. */
	smp_store_release(&sq->published, sq->head);
	queue_work(sq->wq, &sq->work);
}

static u64 hmmgpu_sysram_queue_fence(struct hmmgpu_queue *q)
{
	/* Pairs with the worker's fence release. */
	return smp_load_acquire(&to_sysram_queue(q)->fence);
}

static int hmmgpu_sysram_copy_prepare(struct hmmgpu_queue *q,
				      struct hmmgpu_copy *copy)
{
	/* No peers: sysram devices have no &hmmgpu_device.peer_group. */
	if (WARN_ON_ONCE(copy->dir == HMMGPU_COPY_FROM_PEER))
		return -EINVAL;
	return 0;	/* the worker addresses the pages directly */
}

static void hmmgpu_sysram_copy_finish(struct hmmgpu_queue *q,
				      struct hmmgpu_copy *copy, int err)
{
	/* Without a result, let the worker finish before the pages go. */
	if (err)
		flush_work(&to_sysram_queue(q)->work);
	copy->done = err ? 0 : copy->npages;
}

static void hmmgpu_sysram_free_pages(struct page **pages, unsigned int n)
{
	while (n)
		__free_page(pages[--n]);
	kvfree(pages);
}

static int hmmgpu_sysram_chunk_alloc(struct hmmgpu_device *hdev,
				     unsigned int index)
{
	struct hmmgpu_sysram *sys = hdev->priv;
	struct page **pages;
	unsigned int i;

	if (WARN_ON(index >= sys->num_chunks || sys->backing[index]))
		return -EINVAL;
	pages = kvcalloc(HMMGPU_CHUNK_PAGES, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return -ENOMEM;
	for (i = 0; i < HMMGPU_CHUNK_PAGES; i++) {
		pages[i] = alloc_page(GFP_HIGHUSER | __GFP_ZERO);
		if (!pages[i]) {
			hmmgpu_sysram_free_pages(pages, i);
			return -ENOMEM;
		}
	}
	sys->backing[index] = pages;
	return 0;
}

static void hmmgpu_sysram_chunk_free(struct hmmgpu_device *hdev,
				     unsigned int index)
{
	struct hmmgpu_sysram *sys = hdev->priv;

	hmmgpu_sysram_free_pages(sys->backing[index], HMMGPU_CHUNK_PAGES);
	sys->backing[index] = NULL;
}

static const struct hmmgpu_backend_ops hmmgpu_sysram_ops = {
	.name = "sysram",
	.type = HMMGPU_BACKEND_SYSRAM,
	.queue_space = hmmgpu_sysram_queue_space,
	.queue_write = hmmgpu_sysram_queue_write,
	.queue_kick = hmmgpu_sysram_queue_kick,
	.queue_fence = hmmgpu_sysram_queue_fence,
	.copy_prepare = hmmgpu_sysram_copy_prepare,
	.copy_finish = hmmgpu_sysram_copy_finish,
	.chunk_alloc = hmmgpu_sysram_chunk_alloc,
	.chunk_free = hmmgpu_sysram_chunk_free,
};

/* platform driver */

static void hmmgpu_sysram_put_device(void *hdev)
{
	hmmgpu_device_put(hdev);
}

static void hmmgpu_sysram_destroy_wq(void *wq)
{
	destroy_workqueue(wq);
}

static void hmmgpu_sysram_setup(struct hmmgpu_sysram *sys, int id)
{
	struct hmmgpu_device *hdev = sys->hdev;
	unsigned int i;

	hdev->priv = sys;
	snprintf(hdev->name, sizeof(hdev->name), "hmmgpu-sysram gpu%d", id);
	hdev->caps = HMMGPU_CAP_NOP | HMMGPU_CAP_MIGRATE;
	hdev->vram_size = (u64)hmmgpu_sysram_vram_mb << 20;

	for (i = 0; i < sys->num_queues; i++) {
		struct hmmgpu_sysram_queue *sq = &sys->queues[i];

		sq->q = &hdev->queues[i];
		sq->wq = sys->wq;
		INIT_WORK(&sq->work, hmmgpu_sysram_work);
		hdev->queues[i].priv = sq;
		hdev->queues[i].entries = HMMGPU_SYSRAM_RING_ENTRIES;
	}
}

static int hmmgpu_sysram_probe(struct platform_device *pdev)
{
	unsigned int channels = hmmgpu_sysram_channels;
	struct device *dev = &pdev->dev;
	struct hmmgpu_sysram *sys;
	int ret;

	sys = devm_kzalloc(dev, struct_size(sys, queues, 1 + channels),
			   GFP_KERNEL);
	if (!sys)
		return -ENOMEM;
	sys->num_queues = 1 + channels;
	sys->num_chunks = ((u64)hmmgpu_sysram_vram_mb << 20) / HMMGPU_CHUNK_SIZE;
	sys->backing = devm_kcalloc(dev, sys->num_chunks, sizeof(*sys->backing),
				    GFP_KERNEL);
	if (!sys->backing)
		return -ENOMEM;

	sys->hdev = hmmgpu_device_alloc(dev, &hmmgpu_sysram_ops, channels, 0);
	if (IS_ERR(sys->hdev))
		return PTR_ERR(sys->hdev);
	ret = devm_add_action_or_reset(dev, hmmgpu_sysram_put_device, sys->hdev);
	if (ret)
		return ret;

	/* Copies will run on the CPU fault path: keep a rescuer. */
	sys->wq = alloc_workqueue("%s", WQ_UNBOUND | WQ_HIGHPRI | WQ_MEM_RECLAIM,
				  0, dev_name(dev));
	if (!sys->wq)
		return -ENOMEM;
	/* Drains the workers before the device is put. */
	ret = devm_add_action_or_reset(dev, hmmgpu_sysram_destroy_wq, sys->wq);
	if (ret)
		return ret;

	hmmgpu_sysram_setup(sys, pdev->id);
	ret = hmmgpu_device_register(sys->hdev);
	if (ret)
		return ret;

	platform_set_drvdata(pdev, sys);
	return 0;
}

static void hmmgpu_sysram_remove(struct platform_device *pdev)
{
	struct hmmgpu_sysram *sys = platform_get_drvdata(pdev);

	hmmgpu_device_unregister(sys->hdev);
}

static struct platform_driver hmmgpu_sysram_driver = {
	.driver = {
		.name = HMMGPU_SYSRAM_DRIVER,
	},
	.probe = hmmgpu_sysram_probe,
	.remove = hmmgpu_sysram_remove,
};

static void hmmgpu_sysram_destroy_devices(void)
{
	while (hmmgpu_sysram_count)
		platform_device_unregister(hmmgpu_sysram_pdevs[--hmmgpu_sysram_count]);
	kfree(hmmgpu_sysram_pdevs);
	hmmgpu_sysram_pdevs = NULL;
}

static int hmmgpu_sysram_create_devices(unsigned int n)
{
	struct platform_device *pdev;

	hmmgpu_sysram_pdevs = kcalloc(n, sizeof(*hmmgpu_sysram_pdevs),
				      GFP_KERNEL);
	if (!hmmgpu_sysram_pdevs)
		return -ENOMEM;

	while (hmmgpu_sysram_count < n) {
		pdev = platform_device_register_simple(HMMGPU_SYSRAM_DRIVER,
						       hmmgpu_sysram_count,
						       NULL, 0);
		if (IS_ERR(pdev)) {
			hmmgpu_sysram_destroy_devices();
			return PTR_ERR(pdev);
		}
		hmmgpu_sysram_pdevs[hmmgpu_sysram_count++] = pdev;
	}
	return 0;
}

/**
 * hmmgpu_sysram_init() - register the driver and create sysram_devices
 *	devices
 *
 * A device whose probe fails stays unbound and does not fail the module.
 *
 * Return: 0 or -errno.
 */
int hmmgpu_sysram_init(void)
{
	int ret;

	ret = platform_driver_register(&hmmgpu_sysram_driver);
	if (ret)
		return ret;
	if (!hmmgpu_sysram_devices)
		return 0;
	ret = hmmgpu_sysram_create_devices(hmmgpu_sysram_devices);
	if (ret)
		goto err_unregister_driver;
	return 0;

err_unregister_driver:
	platform_driver_unregister(&hmmgpu_sysram_driver);
	return ret;
}

/**
 * hmmgpu_sysram_exit() - remove the devices and unregister the driver
 */
void hmmgpu_sysram_exit(void)
{
	hmmgpu_sysram_destroy_devices();
	platform_driver_unregister(&hmmgpu_sysram_driver);
}
