#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Runs the emulator's libFuzzer targets (built by the top-level build into BUILD/emu/fuzz) for a
# bounded time, one after the other, each from its checked-in corpus (emu/fuzz/corpus/TARGET).
# Fails on any crash, sanitizer report, leak, timeout (a hang: an input running longer than
# --timeout seconds), out-of-memory or harness violation, printing the report, the input kept
# and how to replay it. Used by the ctest test emu.fuzz and by `make fuzz`.
#
# Usage: emu/fuzz/run.sh --build-dir DIR [--seconds N | --default-seconds N] [--corpus DIR]
#                        [--timeout N]
#   --seconds N          all targets together; the device target gets all but a twelfth, the
#                        layout target the rest (at least 5 s each)
#   --default-seconds N  the same, unless HMMGPU_FUZZ_SECONDS is set (default: it, else 60)
#   --corpus DIR         keep what the fuzzers find in DIR/TARGET and start from it next time
#                        (default: a temporary directory, removed after a clean run)
#   --timeout N          seconds one input may run (default 10)
set -euo pipefail

src=$(cd "$(dirname "$0")" && pwd)
build=
seconds=
default_seconds=60
corpus=
timeout=10
while [ $# -gt 0 ]; do
	case $1 in
	--build-dir) build=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--default-seconds) default_seconds=$2; shift 2 ;;
	--corpus) corpus=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	*) echo "usage: $0 --build-dir DIR [--seconds N | --default-seconds N] [--corpus DIR]" \
		"[--timeout N]" >&2; exit 2 ;;
	esac
done
[ -n "$seconds" ] || seconds=${HMMGPU_FUZZ_SECONDS:-$default_seconds}
if [ -z "$build" ] || ! [ -x "$build/emu-fuzz-device" ]; then
	echo "run.sh: no fuzz targets in '${build}' (the build registers them only with clang and" \
		"libFuzzer: scripts/install-deps, then rebuild)" >&2
	exit 2
fi
build=$(cd "$build" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/hmmgpu-fuzz.XXXXXX")
[ -n "$corpus" ] || corpus=$work/corpus
mkdir -p "$corpus"
corpus=$(cd "$corpus" && pwd)

# The seeds must still be what seeds.cpp writes, and still reach what they are for.
"$build/emu-fuzz-seeds" --check "$src/corpus/device"

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0:handle_abort=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

layout_seconds=$(( seconds / 12 > 5 ? seconds / 12 : 5 ))
device_seconds=$(( seconds - layout_seconds > 5 ? seconds - layout_seconds : 5 ))
status=0
for target in device layout; do
	case $target in
	device) budget=$device_seconds ;;
	layout) budget=$layout_seconds ;;
	esac
	mkdir -p "$corpus/$target" "$work/artifacts"
	log=$work/$target.log
	start=$(date +%s)
	rc=0
	"$build/emu-fuzz-$target" -max_total_time="$budget" -timeout="$timeout" -max_len=4096 \
		-use_value_profile=1 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/$target-" \
		"$corpus/$target" "$src/corpus/$target" >"$log" 2>&1 || rc=$?
	elapsed=$(( $(date +%s) - start ))
	# The last status line: "#N DONE cov: E ft: F corp: C/S ..." (or pulse/NEW when it died).
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
	echo "emu-fuzz-$target: ${runs:-?} runs in ${elapsed} s (${rate:-?}/s), ${cov:-?} edges," \
		"${ft:-?} features, corpus ${corp:-?} (inputs/size)"
	if [ "$rc" -ne 0 ]; then
		status=1
		echo "emu-fuzz-$target: FAILED (exit $rc); its report ($log):" >&2
		# From the report's first line (a sanitizer's, libFuzzer's or the harness's) on.
		first=$(grep -n -m 1 -E '^==[0-9]+==|VIOLATION|^ALARM|^==[0-9]+== ERROR: libFuzzer' "$log" |
			cut -d: -f1 || true)
		if [ -n "$first" ]; then
			tail -n "+$first" "$log" | grep -v '^  0x[0-9a-f]*:' | head -n 80 >&2
		else
			tail -n 60 "$log" >&2
		fi
		for artifact in "$work/artifacts/$target-"*; do
			[ -e "$artifact" ] || continue
			echo "input kept: $artifact; replay it with" >&2
			echo "  HMMGPU_FUZZ_TRACE=1 $build/emu-fuzz-$target $artifact" >&2
		done
	fi
done
if [ "$status" -eq 0 ]; then
	echo "no crash, sanitizer report, leak, hang or violation"
	rm -rf "$work"
else
	echo "fuzzer logs and inputs kept in $work" >&2
fi
exit "$status"
