// SPDX-License-Identifier: GPL-2.0
// Synchronisation the model needs beyond the standard library.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace hmmgpu {

// A shared/exclusive mutex that prefers the exclusive side: once a thread waits to lock it
// exclusively, no new shared owner gets in, so engines that take it shared back to back (a compute
// engine, one wave per step) cannot starve the exclusive side. (glibc's std::shared_mutex prefers
// readers.) Satisfies SharedMutex for std::shared_lock, std::unique_lock and std::scoped_lock.
// Not recursive: a shared owner must not lock it again while an exclusive locker may be waiting.
class WriterFirstSharedMutex {
 public:
  void lock_shared();
  void unlock_shared();
  void lock();
  void unlock();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  uint32_t readers_ = 0;  // the rest guarded by mutex_
  uint32_t writers_waiting_ = 0;
  bool writer_ = false;
};

}  // namespace hmmgpu
