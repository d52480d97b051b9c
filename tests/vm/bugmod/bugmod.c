// SPDX-License-Identifier: GPL-2.0
/*
 * bugmod - a deliberately broken driver: BUG() in its probe.
 *
 * Only the test suite loads it, to prove that vm/run fails a run whose
 * kernel hit a BUG even though the command itself succeeded.
 */
#include <linux/module.h>
#include <linux/platform_device.h>

static struct platform_device *bugmod_pdev;

static int bugmod_probe(struct platform_device *pdev)
{
	BUG();
	return 0;
}

static struct platform_driver bugmod_driver = {
	.probe = bugmod_probe,
	.driver = { .name = "hmmgpu-bugmod" },
};

static int __init bugmod_init(void)
{
	int ret = platform_driver_register(&bugmod_driver);

	if (ret)
		return ret;
	bugmod_pdev = platform_device_register_simple("hmmgpu-bugmod", -1, NULL, 0);
	if (IS_ERR(bugmod_pdev)) {
		platform_driver_unregister(&bugmod_driver);
		return PTR_ERR(bugmod_pdev);
	}
	return 0;
}
module_init(bugmod_init);

static void __exit bugmod_exit(void)
{
	platform_device_unregister(bugmod_pdev);
	platform_driver_unregister(&bugmod_driver);
}
module_exit(bugmod_exit);

MODULE_DESCRIPTION("A driver with BUG() in probe, for testing the VM runner");
MODULE_LICENSE("GPL");
