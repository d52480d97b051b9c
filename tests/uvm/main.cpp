// SPDX-License-Identifier: GPL-2.0
//
// main() of the uvm library's suite: GoogleTest's, except that a run in
// which every test skipped (no device of the kind the filter selects, e.g.
// no CUDA device) exits 77, which ctest reports as skipped.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const ::testing::UnitTest& u = *::testing::UnitTest::GetInstance();
  if (rc == 0 && u.successful_test_count() == 0 && u.skipped_test_count() > 0) {
    return 77;
  }
  return rc;
}
