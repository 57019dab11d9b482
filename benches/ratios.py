#!/usr/bin/env python3
"""Median ratios subject/floor from the output of the workloads bench.

    cargo bench --all-features --bench workloads | tee workloads.txt
    python3 benches/ratios.py workloads.txt

Pairs every `anybatch*` bench with the `floor_*` benches of the same group,
runtime and argument (`anybatch_N` only with `floor_*_N`). For `latency`, the
`_1` ratio is also given with the harness round trip (`harness_1`) taken off
both sides.
"""

import re
import sys

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def medians(lines):
    """{(group, runtime, bench, arg): median seconds} from divan's tree."""
    found, path = {}, []
    for line in lines:
        match = re.match(r"^([│ ]*)[├╰]─ (\S+)(.*)$", line.rstrip("\n"))
        if not match:
            continue
        depth = len(match.group(1)) // 3
        path = path[:depth] + [match.group(2)]
        columns = match.group(3).split("│")
        if len(path) >= 3 and len(columns) >= 3 and columns[0].strip():
            value, unit = columns[2].split()
            group, runtime, bench = path[:3]
            found[(group, runtime, bench, "/".join(path[3:]))] = float(value) * UNITS[unit]
    return found


def show(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds / 1e-9:.4g} ns"


def suffix(name):
    tail = name.rsplit("_", 1)
    return tail[1] if len(tail) == 2 and tail[1].isdigit() else None


def main():
    source = open(sys.argv[1], encoding="utf-8") if len(sys.argv) > 1 else sys.stdin
    found = medians(source)
    rows = []
    for (group, runtime, bench, arg), subject in found.items():
        if not bench.startswith("anybatch"):
            continue
        for (g, r, floor, a), base in found.items():
            if (g, r, a) != (group, runtime, arg) or not floor.startswith("floor"):
                continue
            if suffix(bench) is not None and suffix(floor) != suffix(bench):
                continue
            label = f"{group}/{runtime}/{bench}" + (f"/{arg}" if arg else "")
            ratio = f"x{subject / base:.2f}"
            harness = found.get((group, runtime, "harness_1", arg))
            if suffix(bench) == "1" and harness is not None and base > harness:
                ratio += f"  (x{(subject - harness) / (base - harness):.2f} without the harness)"
            rows.append((label, show(subject), floor, show(base), ratio))
    if not rows:
        sys.exit("no anybatch/floor pairs found")
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(
            f"{row[0]:{widths[0]}}  {row[1]:>{widths[1]}}  vs {row[2]:{widths[2]}}"
            f"  {row[3]:>{widths[3]}}  {row[4]}"
        )


if __name__ == "__main__":
    main()
