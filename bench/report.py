# SPDX-License-Identifier: GPL-2.0
"""The results of a `make bench` run: table, targets, JSON and chart.

bench/run collects the Google Benchmark JSON of each phase (the host
copy-engine benchmark, and hmmgpu-bench in each VM or on this machine) and
hands it here. Everything is computed from the medians of the repetitions
(best = the fastest repetition, cv = their coefficient of variation); a
ratio "ours / X" is a ratio of throughputs, so above 1 means ours is faster.
"""

import json
import math
import shutil
import subprocess
from pathlib import Path

MIB = 1 << 20

# The targets of issue 14: (key, text, goal, how the measured value compares).
TARGETS = [
    ("to_device_vs_test_hmm", "prefetch to device >= 3x test_hmm's migrate-to-device "
     "(without its verification copy), every size", 3.0, ">="),
    ("to_system_vs_test_hmm", "prefetch to system >= 1.5x test_hmm's migrate-to-system, "
     "every size", 1.5, ">="),
    ("fault_seq_vs_test_hmm", "CPU-fault migration back, sequential, >= 3x test_hmm "
     "(fault-around at its default)", 3.0, ">="),
    ("fault_random_vs_test_hmm", "CPU-fault migration back, random, no worse than test_hmm "
     "(fault-around at its default)", 1.0, ">="),
    ("to_device_vs_floor", "prefetch to device >= 0.8 of the floor at 64 MiB", 0.8, ">="),
    ("to_system_vs_floor", "prefetch to system >= 0.8 of the floor at 64 MiB", 0.8, ">="),
    ("to_device_flat", "per-byte cost of prefetch to device flat within 20%, 4 to 256 MiB "
     "(slowest / fastest per byte)", 1.2, "<="),
    ("to_system_flat", "per-byte cost of prefetch to system flat within 20%, 4 to 256 MiB "
     "(slowest / fastest per byte)", 1.2, "<="),
    ("oversub_2x", "2x oversubscription streaming <= 3x the in-VRAM (0.5x) time per byte",
     3.0, "<="),
    ("channels_host", "2 copy channels >= 1.6x one channel on the host alone "
     "(4 KiB blocks, the slower direction)", 1.6, ">="),
]


COUNTERS = ("bytes", "faults", "driver_faults", "us_per_fault", "verified", "evicted_pages",
            "device_faults", "to_device_pages", "us_per_nop", "driver_us_per_nop")


class Measurement:
    """The aggregates of one measurement: counter -> {mean, median, stddev, cv, min}."""

    def __init__(self, name):
        self.name = name
        self.stats = {}
        self.runs = []  # single runs, when Google Benchmark reported no aggregates
        self.error = None
        self.repetitions = 0

    def add(self, entry):
        if entry.get("error_occurred"):
            self.error = entry.get("error_message", "failed")
            return
        values = {k: v for k, v in entry.items()
                  if isinstance(v, (int, float)) and (k.endswith("_s") or k in COUNTERS)}
        agg = entry.get("aggregate_name")
        if agg is None:
            self.runs.append(values)
            return
        self.repetitions = entry.get("repetitions", self.repetitions)
        for key, value in values.items():
            self.stats.setdefault(key, {})[agg] = value

    def finish(self):
        """Aggregates of the single runs when there are none (one repetition)."""
        if self.stats or not self.runs:
            return
        self.repetitions = len(self.runs)
        for key in self.runs[0]:
            v = sorted(r[key] for r in self.runs)
            mean = sum(v) / len(v)
            self.stats[key] = {"median": v[len(v) // 2], "min": v[0], "mean": mean,
                               "cv": None}

    @property
    def bytes(self):
        return self.stats.get("bytes", {}).get("median", 0)

    def seconds(self, phase, agg="median"):
        return self.stats.get(phase + "_s", {}).get(agg)

    def rate(self, phase, agg="median"):
        """MiB/s of phase; agg "best" is the fastest repetition."""
        s = self.seconds(phase, "min" if agg == "best" else agg)
        return self.bytes / MIB / s if s else None

    def cv(self, phase):
        return self.stats.get(phase + "_s", {}).get("cv")

    def value(self, counter, agg="median"):
        return self.stats.get(counter, {}).get(agg)


def parse_phase(gb_json):
    """{name without the /manual_time suffix: Measurement} of one Google Benchmark JSON."""
    out = {}
    for entry in gb_json.get("benchmarks", []):
        name = entry.get("run_name", entry["name"])
        name = name.removesuffix("/manual_time")
        out.setdefault(name, Measurement(name)).add(entry)
    for m in out.values():
        m.finish()
    return out


def unverified(phases):
    """Measurements that failed or whose data was not verified: [(phase, name, why)]."""
    bad = []
    for pname, phase in phases.items():
        for name, m in parse_phase(phase["result"]).items():
            if m.error:
                bad.append((pname, name, m.error))
            elif m.value("verified", "min") != 1:
                bad.append((pname, name, "not verified"))
    return bad


# ---- formatting ----

def fmt_rate(m, phase):
    if m is None or m.rate(phase) is None:
        return "–"
    cv = m.cv(phase)
    spread = f" ±{cv * 100:.0f}%" if cv is not None and m.repetitions > 1 else ""
    return f"{m.rate(phase):.0f} ({m.rate(phase, 'best'):.0f}){spread}"


def fmt_ratio(x):
    return "–" if x is None else f"{x:.2f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Tables, targets and chart data from the phases of one run."""

    def __init__(self, meta, phases):
        self.meta = meta
        self.phases = phases
        self.parsed = {name: parse_phase(p["result"]) for name, p in phases.items()}
        main = phases.get("main", {}).get("result", {}).get("context", {})
        self.ours = "emu" if "hmmgpu_emu" in main else "sysram"
        self.targets = {}
        self.chart = {}
        self.compute_size = None
        self.verdicts = []

    def m(self, phase, name):
        return self.parsed.get(phase, {}).get(name)

    def size_of(self, prefix):
        """The size of the first main-phase measurement named prefix + size, or None."""
        for name in self.parsed.get("main", {}):
            if name.startswith(prefix):
                return name.split("/")[-1]
        return None

    def sizes(self):
        names = self.parsed.get("main", {})
        sizes = {n.split("/")[2] for n in names if n.startswith("prefetch/")}
        return sorted(sizes, key=lambda s: float(s.rstrip("M")))

    # -- sections --

    def migration(self):
        ours = self.ours
        rows = []
        per_byte = {"to_device": [], "to_system": []}
        worst = {"to_device": None, "to_system": None}
        chart = []
        for phase, label in (("to_device", "prefetch to device"),
                             ("to_system", "prefetch to system")):
            for size in self.sizes():
                o = self.m("main", f"prefetch/{ours}/{size}")
                t = self.m("main", f"prefetch/test_hmm/{size}")
                f = self.m("main", f"prefetch/emu-floor/{size}")
                s = self.m("main", f"prefetch/sysram/{size}") if ours == "emu" else None
                o_rate = o.rate(phase) if o else None
                vs_t = ratio(o_rate, t.rate(phase) if t else None)
                vs_f = ratio(o_rate, f.rate(phase) if f else None)
                with_verify = fmt_rate(t, "to_device_with_verify") if phase == "to_device" \
                    else ""
                rows.append([label, size.replace("M", " MiB"), fmt_rate(o, phase),
                             fmt_rate(t, phase), with_verify, fmt_ratio(vs_t),
                             fmt_rate(f, phase), fmt_ratio(vs_f), fmt_rate(s, phase)])
                if vs_t is not None:
                    w = worst[phase]
                    worst[phase] = vs_t if w is None else min(w, vs_t)
                if o_rate:
                    per_byte[phase].append(1 / o_rate)
                if size == "64M":
                    self.targets[f"{phase}_vs_floor"] = vs_f
                chart.append((phase, float(size.rstrip("M")), o_rate,
                              t.rate(phase) if t else None, f.rate(phase) if f else None,
                              s.rate(phase) if s else None))
        self.targets["to_device_vs_test_hmm"] = worst["to_device"]
        self.targets["to_system_vs_test_hmm"] = worst["to_system"]
        for phase, values in per_byte.items():
            if len(values) >= 2 and {"4M", "256M"} <= set(self.sizes()):
                self.targets[f"{phase}_flat"] = max(values) / min(values)
        self.chart["migration"] = chart
        header = ["migration, MiB/s", "size", f"ours ({ours})", "test_hmm",
                  "test_hmm with its verify copy", "ours / test_hmm", "floor",
                  "ours / floor", "sysram"]
        return md_table(header, rows)

    def faults(self):
        ours = self.ours
        rows = []
        chart = []
        fa = self.phases.get("main", {}).get("result", {}).get("context", {}).get(
            "hmmgpu_fault_around_pages", "default")
        for order in ("seq", "random"):
            size = self.size_of(f"fault_back/{ours}/{order}/")
            if size is None:
                continue

            def get(subject, o=order, sz=size):
                return self.m("main", f"fault_back/{subject}/{o}/{sz}")

            o, off, t = get(ours), get(f"{ours}-fa-off"), get("test_hmm")
            f = get("emu-floor") if ours == "emu" else None
            s = get("sysram") if ours == "emu" else None

            def cell(x):
                if x is None:
                    return "–"
                us = x.value("us_per_fault")
                return f"{fmt_rate(x, 'fault_back')}; {us:.0f} µs/fault" if us else \
                    fmt_rate(x, "fault_back")
            vs_t = ratio(o.rate("fault_back") if o else None,
                         t.rate("fault_back") if t else None)
            vs_t_off = ratio(off.rate("fault_back") if off else None,
                             t.rate("fault_back") if t else None)
            rows.append([f"{'sequential' if order == 'seq' else 'random'}, "
                         f"{size.replace('M', ' MiB')}", cell(o), cell(off), cell(t),
                         fmt_ratio(vs_t), fmt_ratio(vs_t_off), cell(f), cell(s)])
            self.targets[f"fault_{order}_vs_test_hmm"] = vs_t
            chart.append((order, *(x.rate("fault_back") if x else None
                                   for x in (o, off, t, f, s)),
                          *(x.value("us_per_fault") if x else None for x in (o, off, t, f, s))))
        self.chart["faults"] = chart
        if not rows:
            return ""
        header = ["CPU faults back, MiB/s", f"ours (fault-around {fa})",
                  "ours (fault-around off)", "test_hmm", "ours / test_hmm",
                  "ours off / test_hmm", "floor", "sysram"]
        trips = []
        for subject in (ours, "sysram") if ours == "emu" else (ours,):
            nop = self.m("main", f"round_trip/{subject}/nop")
            if nop and nop.value("us_per_nop"):
                trips.append(f"{subject} {nop.value('us_per_nop'):.0f} µs (best "
                             f"{nop.value('us_per_nop', 'min'):.0f}; from doorbell to "
                             f"interrupt {nop.value('driver_us_per_nop'):.0f} µs)")
        note = ("\n\nDevice round trip, one NOP waited for (every copy a fault makes waits "
                "at least this long): " + "; ".join(trips) + ".") if trips else ""
        return md_table(header, rows) + note

    def compute(self):
        rows = []
        chart = []
        self.compute_size = None
        for kernel in ("stream", "reduction"):
            size = self.size_of(f"first_touch/{kernel}/")
            if size is None:
                continue
            self.compute_size = size.replace("M", " MiB")
            ft = self.m("main", f"first_touch/{kernel}/{size}")
            pr = self.m("main", f"prefetch_run/{kernel}/{size}")
            total = None
            if pr and pr.seconds("migrate") and pr.seconds("kernel"):
                mig = pr.stats["migrate_s"]
                ker = pr.stats["kernel_s"]
                total = {a: mig[a] + ker[a] for a in ("median", "min")}
            total_rate = pr.bytes / MIB / total["median"] if total else None
            best_rate = pr.bytes / MIB / total["min"] if total else None
            pr_cell = f"{total_rate:.0f} ({best_rate:.0f})" if total else "–"
            name = "streaming (INCREMENT_U32)" if kernel == "stream" else \
                "reduction (SUM_U64)"
            rows.append([f"{name}, {size.replace('M', ' MiB')}", fmt_rate(ft, "kernel"),
                         pr_cell, fmt_rate(pr, "migrate"), fmt_rate(pr, "kernel"),
                         fmt_rate(pr, "resident_kernel"),
                         fmt_ratio(ratio(ft.rate("kernel") if ft else None, total_rate))])
            chart.append((kernel, ft.rate("kernel") if ft else None, total_rate,
                          pr.rate("resident_kernel") if pr else None))
        self.chart["compute"] = chart
        header = ["compute, MiB/s", "first touch (device faults)", "prefetch then run",
                  "its prefetch", "its kernel", "kernel on resident data",
                  "first touch / prefetch+run"]
        return md_table(header, rows) if rows else ""

    def oversub(self):
        pname = "oversub" if "oversub" in self.parsed else "main"  # smoke: one boot
        phase = self.parsed.get(pname, {})
        rows = []
        chart = []
        base = None
        entries = sorted(((float(n.split("/")[-1].rstrip("x")), m) for n, m in phase.items()
                          if n.startswith("oversub/")), key=lambda e: e[0])
        for factor, m in entries:
            per_byte = m.seconds("kernel") / m.bytes if m.seconds("kernel") else None
            if factor == 0.5:
                base = per_byte
            rows.append([f"{factor:g}x VRAM ({m.bytes / MIB:.0f} MiB)", fmt_rate(m, "kernel"),
                         fmt_ratio(ratio(per_byte, base)),
                         f"{m.value('evicted_pages') or 0:.0f}",
                         f"{m.value('device_faults') or 0:.0f}"])
            chart.append((factor, m.rate("kernel")))
            if factor == 2 and base:
                self.targets["oversub_2x"] = per_byte / base
        self.chart["oversub"] = chart
        vram = self.phases.get(pname, {}).get("result", {}).get("context", {}).get(
            "hmmgpu_emu_vram")
        title = f"oversubscription, VRAM {int(vram) >> 20} MiB" if vram else "oversubscription"
        header = [title, "streaming MiB/s", "time per byte / in-VRAM (0.5x)",
                  "evicted pages", "device faults"]
        return md_table(header, rows) if rows else ""

    def cuda(self):
        """The CUDA row set (phase "cuda", hmmgpu-bench-cuda on an NVIDIA GPU)."""
        phase = self.parsed.get("cuda", {})
        if not phase:
            return ""
        ctx = self.phases.get("cuda", {}).get("result", {}).get("context", {})
        rows = []
        chart = []
        sizes = sorted({n.split("/")[2] for n in phase if n.startswith("prefetch/cuda/")},
                       key=lambda s: float(s.rstrip("M")))
        for size in sizes:
            m = phase.get(f"prefetch/cuda/{size}")
            rows.append([f"prefetch, {size.replace('M', ' MiB')}", fmt_rate(m, "to_device"),
                         fmt_rate(m, "to_system")])
            chart.append((float(size.rstrip("M")), m.rate("to_device") if m else None,
                          m.rate("to_system") if m else None))
        for name, m in sorted(phase.items()):
            if name.startswith("fault_back/cuda/"):
                order = "sequential" if name.split("/")[2] == "seq" else "random"
                rows.append([f"CPU faults back, {order}, {name.split('/')[-1].replace('M', ' MiB')}",
                             "", fmt_rate(m, "fault_back")])
        for kernel in ("stream", "reduction"):
            ft = next((m for n, m in phase.items() if n.startswith(f"first_touch/{kernel}/")),
                      None)
            pr = next((m for n, m in phase.items() if n.startswith(f"prefetch_run/{kernel}/")),
                      None)
            if ft or pr:
                label = "streaming (increment)" if kernel == "stream" else "reduction (sum)"
                rows.append([f"{label}: first touch (device faults) / prefetch, kernel, "
                             "kernel on resident data", fmt_rate(ft, "kernel"),
                             f"{fmt_rate(pr, 'migrate')}, {fmt_rate(pr, 'kernel')}, "
                             f"{fmt_rate(pr, 'resident_kernel')}"])
        for name, m in sorted(phase.items(), key=lambda e: e[0]):
            if name.startswith("oversub/"):
                factor = name.split("/")[-1]
                rows.append([f"streaming over {factor} of the free memory "
                             f"({m.bytes / MIB:.0f} MiB)", fmt_rate(m, "kernel"), ""])
        self.chart["cuda"] = chart
        title = f"CUDA: {ctx.get('hmmgpu_cuda', 'a CUDA device')}, MiB/s"
        return md_table([title, "to device / kernel", "to system / CPU"], rows)

    def channels(self):
        rows = []
        chart = {}
        host = self.parsed.get("host", {})
        worst = None
        for direction in ("to_vram", "to_sysmem"):
            for block in ("4K", "2M"):
                ms = [host.get(f"copy_engine/host/{direction}/{block}/{c}ch") for c in (1, 2, 4)]
                if not any(ms):
                    continue
                rates = [m.rate("copy") if m else None for m in ms]
                r2 = ratio(rates[1], rates[0])
                if block == "4K" and r2 is not None:
                    worst = r2 if worst is None else min(worst, r2)
                rows.append([f"host, {direction.replace('_', ' ')}, {block} blocks",
                             *(fmt_rate(m, "copy") for m in ms), fmt_ratio(r2),
                             fmt_ratio(ratio(rates[2], rates[0]))])
                chart[f"host {direction.replace('_', ' ')} {block}"] = rates
        self.targets["channels_host"] = worst
        vm_phases = {1: "channels1", 2: "main", 4: "channels4"}
        for phase, label in (("to_device", "VM, prefetch to device, 64 MiB"),
                             ("to_system", "VM, prefetch to system, 64 MiB")):
            ms = [self.m(p, "prefetch/emu/64M") for p in vm_phases.values()]
            if not ms[0] and not ms[2]:
                continue
            rates = [m.rate(phase) if m else None for m in ms]
            rows.append([label, *(fmt_rate(m, phase) for m in ms),
                         fmt_ratio(ratio(rates[1], rates[0])),
                         fmt_ratio(ratio(rates[2], rates[0]))])
            chart[f"VM {phase.replace('_', ' ')}"] = rates
        self.chart["channels"] = chart
        header = ["copy engine, MiB/s", "1 channel", "2 channels", "4 channels", "2 / 1",
                  "4 / 1"]
        return md_table(header, rows) if rows else ""

    def target_table(self):
        rows = []
        verdicts = []
        for key, text, goal, op in TARGETS:
            value = self.targets.get(key)
            if value is None:
                verdict = "not measured"
            else:
                ok = value >= goal if op == ">=" else value <= goal
                verdict = "met" if ok else "MISSED"
            verdicts.append({"target": key, "text": text, "goal": goal, "op": op,
                             "value": value, "verdict": verdict})
            rows.append([text, fmt_ratio(value), f"{op} {goal:g}", verdict])
        return md_table(["target", "measured", "goal", "verdict"], rows), verdicts

    # -- outputs --

    def markdown(self):
        meta = self.meta
        warmup = " after a warm-up run" if meta.get("warmup", True) else ""
        head = [f"hmmgpu bench ({meta['profile']}), {meta['where']}; "
                f"{meta['repetitions']} repetitions{warmup}, every run's data verified. "
                "MiB/s: median (best) ±cv.", ""]
        if meta.get("quiet"):
            head += [f"Machine: {meta['quiet']}", ""]
        sections = [self.migration(), self.faults(), self.compute(), self.oversub(),
                    self.channels(), self.cuda()]
        targets, verdicts = self.target_table()
        self.verdicts = verdicts
        return "\n".join(head) + "\n\n".join(s for s in sections if s) + "\n\n" + targets + "\n"

    def to_json(self, markdown):
        measurements = {}
        for pname, parsed in self.parsed.items():
            for name, m in parsed.items():
                measurements[f"{pname}:{name}"] = {
                    "bytes": m.bytes, "repetitions": m.repetitions, "stats": m.stats,
                    "error": m.error,
                    "mib_per_s": {k[:-2]: {"median": m.rate(k[:-2]), "best": m.rate(
                        k[:-2], "best")} for k in m.stats if k.endswith("_s")},
                }
        return {"meta": self.meta, "targets": self.verdicts, "measurements": measurements,
                "table_markdown": markdown,
                "phases": {n: {k: v for k, v in p.items() if k != "result"} | {
                    "context": p["result"].get("context", {})} for n, p in self.phases.items()}}


# ---- chart ----

def _val(x):
    if isinstance(x, str):
        return f'"{x}"'
    return "NaN" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


class Chart:
    """A gnuplot script of panels in a grid; a panel without data says so."""

    def __init__(self, png, title, rows, cols):
        self.lines = [
            "set terminal pngcairo size 1800,1100 font ',11' noenhanced",
            f"set output '{png}'",
            "set datafile missing 'NaN'",
            "set grid ytics",
            f"set multiplot layout {rows},{cols} title \"{title}\" font ',14'",
        ]
        self.blocks = 0

    def panel(self, title, rows, setup, plots):
        """rows: data rows (x first); setup: gnuplot commands; plots: (column, title, style)."""
        self.lines += ["unset label", "set autoscale",
                       "set xtics autofreq", "set ytics autofreq", "unset logscale",
                       "set key top left font ',9'", "unset xlabel", "set yrange [0:*]",
                       "set style data linespoints", f"set title '{title}'"]
        has_data = any(not isinstance(v, str) and v is not None for r in rows for v in r[1:])
        if not has_data:
            self.lines += ["unset key", "set xrange [0:1]", "set yrange [0:1]", "unset xtics",
                           "unset ytics", "set label 'not measured in this run' at 0.5,0.5 "
                           "center", "plot 2 notitle"]
            return
        self.blocks += 1
        name = f"$d{self.blocks}"
        self.lines.append(f"{name} << EOD")
        self.lines += [" ".join(_val(v) for v in r) for r in rows]
        self.lines.append("EOD")
        self.lines += setup
        self.lines.append("plot " + ", ".join(
            f"{name} u {col} t '{t}' {style}".strip() for col, t, style in plots))

    def script(self):
        return "\n".join(self.lines + ["unset multiplot"]) + "\n"


BARS = ["set style data histograms", "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1", "set boxwidth 0.9", "set xtics nomirror"]


def gnuplot_script(report, png):
    """A gnuplot script drawing six panels into png."""
    c = report.chart
    meta = report.meta
    ours = report.ours
    chart = Chart(png, f"hmmgpu bench: {meta['where']} ({meta['profile']}, median of "
                       f"{meta['repetitions']})", 2, 3)
    mig = c.get("migration", [])
    rows = [(size, *to_dev[2:], *to_sys[2:]) for to_dev in mig if to_dev[0] == "to_device"
            for to_sys in mig if to_sys[0] == "to_system" and to_sys[1] == to_dev[1]
            for size in [to_dev[1]]]
    subjects = [(f"ours ({ours})", 1), ("test_hmm", 2), ("floor", 3), ("sysram", 4)]
    plots = []
    for i, (name, color) in enumerate(subjects):
        plots.append((f"1:{2 + i}", f"{name} to device", f"lw 2 lc {color} pt 7"))
        plots.append((f"1:{6 + i}", f"{name} to system", f"lw 2 lc {color} dt 2 pt 5"))
    cuda = {r[0]: r[1:] for r in c.get("cuda", [])}
    if cuda:
        sizes = sorted({r[0] for r in rows} | set(cuda))
        rows = [(size, *next((r[1:] for r in rows if r[0] == size), (None,) * 8),
                 *cuda.get(size, (None, None))) for size in sizes]
        plots.append(("1:10", "cuda to device", "lw 2 lc 6 pt 9"))
        plots.append(("1:11", "cuda to system", "lw 2 lc 6 dt 2 pt 9"))
    title = "prefetch (MIGRATE ioctl; cudaMemPrefetchAsync), MiB/s" if cuda else \
        "prefetch (MIGRATE ioctl), MiB/s"
    chart.panel(title, rows,
                ["set logscale x 2", "set xlabel 'buffer MiB'"], plots)
    faults = c.get("faults", [])
    names = [("ours, fault-around", 1), ("ours, fault-around off", 5), ("test_hmm", 2),
             ("floor", 3), ("sysram", 4)]
    chart.panel("CPU faults back, MiB/s", [(r[0], *r[1:6]) for r in faults], BARS,
                [(f"{2 + i}:xtic(1)" if i == 0 else f"{2 + i}", n, f"lc {col}")
                 for i, (n, col) in enumerate(names)])
    chart.panel("CPU faults back, microseconds per fault", [(r[0], *r[6:11]) for r in faults],
                BARS + ["set logscale y", "set yrange [*:*]"],
                [(f"{2 + i}:xtic(1)" if i == 0 else f"{2 + i}", n, f"lc {col}")
                 for i, (n, col) in enumerate(names)])
    chart.panel(f"compute ({report.compute_size or '?'}), MiB/s", c.get("compute", []), BARS,
                [("2:xtic(1)", "first touch (device faults)", "lc 1"),
                 ("3", "prefetch then run", "lc 2"), ("4", "kernel on resident data", "lc 3")])
    chart.panel("streaming under oversubscription, MiB/s", c.get("oversub", []),
                ["set logscale x 2", "set xlabel 'working set / VRAM'"],
                [("1:2", "INCREMENT_U32 over CPU-filled memory", "lw 2 pt 7")])
    chans = c.get("channels", {})
    chart.panel("copy engine by channels, MiB/s",
                [(ch, *(rates[i] for rates in chans.values())) for i, ch in enumerate((1, 2, 4))],
                ["set xlabel 'channels'", "set xtics (1,2,4)", "set key bottom right"],
                [(f"1:{2 + i}", k, "lw 2 pt 7") for i, k in enumerate(chans)])
    return chart.script()


def draw_chart(report, out_dir):
    """Writes results.png with gnuplot; returns its path, or None with the reason."""
    if shutil.which("gnuplot") is None:
        return None, "gnuplot is not installed (make bench installs gnuplot-nox)"
    png = out_dir / "results.png"
    script = out_dir / "results.gp"
    script.write_text(gnuplot_script(report, png))
    res = subprocess.run(["gnuplot", str(script)], capture_output=True, text=True)
    if res.returncode != 0:
        return None, f"gnuplot failed: {res.stderr.strip()[-800:]}"
    return png, None


def write(meta, phases, out_dir):
    """Writes results.md, results.json and results.png into out_dir; returns (markdown,
    report, chart path or None, why no chart)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(meta, phases)
    markdown = report.markdown()
    (out_dir / "results.md").write_text(markdown)
    (out_dir / "results.json").write_text(json.dumps(report.to_json(markdown), indent=1) + "\n")
    png, why = draw_chart(report, out_dir)
    return markdown, report, png, why
