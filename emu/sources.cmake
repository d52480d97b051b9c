# SPDX-License-Identifier: GPL-2.0
# The emulator's sources but main.cpp, for the core library (CMakeLists.txt) and for the separate
# clang build of the fuzzers (fuzz/CMakeLists.txt).
set(HMMGPU_EMU_CORE_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/src/cli.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/compute.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/emulator.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/gpu.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/gpu_mmu.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/guest_ram.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/log.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/mmu.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/os.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/sync.cpp
)
