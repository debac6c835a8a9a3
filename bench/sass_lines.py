#!/usr/bin/env python3
"""Static SASS of one kernel, counted by the innermost source line it came from.

    python3 bench/sass_lines.py OBJECT KERNEL_REGEX [--ops STL,LDL] [--top 30]

OBJECT is a .o or .cubin built with -lineinfo (every CUDA source here is); KERNEL_REGEX picks the
mangled kernel names to count (each one reported on its own). Per kernel: its instruction count,
then the source lines with the most instructions whose opcode starts with one of --ops (default the
local-memory spills, STL and LDL; --ops '' counts every instruction). Inlined code is charged to
the line it was written on, not to its call site, so a spill inside a helper names the helper's line.
Needs cuobjdump and nvdisasm on PATH (CUDA toolkit; here without one: `pip download
nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`, unzip, PATH=.../nvidia/cu13/bin).
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

FUNCTION = re.compile(r"\s*\.text\.(\S+):")
LOCATION = re.compile(r'//## File "([^"]+)", line (\d+)')
INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def cubins(path, work):
    if path.endswith(".cubin"):
        return [path]
    subprocess.run(["cuobjdump", "-xelf", "all", os.path.abspath(path)], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    return [os.path.join(work, f) for f in sorted(os.listdir(work)) if f.endswith(".cubin")]


def count(sass, kernel, ops):
    """{kernel: (instructions, Counter((file, line) -> matching instructions))}"""
    out = {}
    fn, where, fresh = None, None, True
    for line in sass.splitlines():
        m = FUNCTION.match(line)
        if m:
            fn = m.group(1) if kernel.search(m.group(1)) else None
            if fn:
                out[fn] = [0, collections.Counter()]
            continue
        if fn is None:
            continue
        m = LOCATION.search(line)
        if m:  # the first location after an instruction is the innermost (the rest are call sites)
            if fresh:
                where, fresh = (os.path.basename(m.group(1)), int(m.group(2))), False
            continue
        m = INSTRUCTION.search(line)
        if m:
            fresh = True
            out[fn][0] += 1
            if not ops or m.group(1).startswith(ops):
                out[fn][1][where] += 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("object")
    ap.add_argument("kernel", help="regex on the mangled kernel name")
    ap.add_argument("--ops", default="STL,LDL", help="opcode prefixes, comma-separated ('' = all)")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    ops = tuple(o for o in args.ops.split(",") if o)
    kernel = re.compile(args.kernel)
    with tempfile.TemporaryDirectory() as work:
        found = {}
        for cubin in cubins(args.object, work):
            sass = subprocess.run(["nvdisasm", "-gi", cubin], check=True, capture_output=True, text=True).stdout
            found.update(count(sass, kernel, ops))
    if not found:
        sys.exit(f"sass_lines.py: no kernel of {args.object} matches {args.kernel}")
    for fn, (total, lines) in sorted(found.items()):
        print(f"{fn}: {total} instructions, {sum(lines.values())} of {args.ops or 'every op'}")
        for (file, line), n in lines.most_common(args.top):
            print(f"  {n:6d}  {file}:{line}")


if __name__ == "__main__":
    main()
