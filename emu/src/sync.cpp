// SPDX-License-Identifier: GPL-2.0
#include "sync.h"

namespace hmmgpu {

void WriterFirstSharedMutex::lock_shared() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return !writer_ && writers_waiting_ == 0; });
  ++readers_;
}

void WriterFirstSharedMutex::unlock_shared() {
  const std::scoped_lock lock(mutex_);
  if (--readers_ == 0) {
    cv_.notify_all();
  }
}

void WriterFirstSharedMutex::lock() {
  std::unique_lock lock(mutex_);
  ++writers_waiting_;
  cv_.wait(lock, [this] { return !writer_ && readers_ == 0; });
  --writers_waiting_;
  writer_ = true;
}

void WriterFirstSharedMutex::unlock() {
  const std::scoped_lock lock(mutex_);
  writer_ = false;
  cv_.notify_all();
}

}  // namespace hmmgpu
