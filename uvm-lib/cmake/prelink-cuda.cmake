# SPDX-License-Identifier: GPL-2.0
#
# cmake -DLD=ld -DNM=nm -DOBJCOPY=objcopy -DCUDART=libcudart_static.a
#       -DOBJECTS="a.o|b.o" -DOUT=out.o -P prelink-cuda.cmake
#
# Links the CUDA provider's objects and the static CUDA runtime into one
# relocatable object (ld -r pulls in the runtime's members they use), then
# makes every symbol the runtime defines local to it: libuvm carries its
# own private CUDA runtime, which neither its consumers nor another CUDA
# runtime in the same program can see or clash with.
string(REPLACE "|" ";" objects "${OBJECTS}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "prelink-cuda: ${ARGN} failed (${rc}): ${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

# The global symbols defined by `files`.
function(defined_globals var)
  run(${NM} --defined-only -g ${ARGN})
  string(REGEX MATCHALL "[0-9a-fA-F]+ [A-Za-z] [^\n]+" lines "${out}")
  set(names)
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[0-9a-fA-F]+ [A-Za-z] " "" name "${line}")
    list(APPEND names "${name}")
  endforeach()
  set(${var} ${names} PARENT_SCOPE)
endfunction()

run(${LD} -r -o ${OUT}.tmp ${objects} ${CUDART})
defined_globals(runtime ${CUDART})
defined_globals(own ${objects})
if(own)
  list(REMOVE_ITEM runtime ${own})
endif()
list(REMOVE_DUPLICATES runtime)
list(JOIN runtime "\n" text)
file(WRITE ${OUT}.local "${text}\n")
run(${OBJCOPY} --localize-symbols=${OUT}.local ${OUT}.tmp ${OUT})
file(REMOVE ${OUT}.tmp)
