"""Where the gateway's CPU goes, by layer (`LAYERS=1 bash bench/profile.sh`).

    python3 bench/profile_layers.py PERF_DATA

PERF_DATA must hold call graphs (`perf record --call-graph dwarf`). Each
sample is put in the kernel when its leaf is a kernel function, else
under the first layer found walking up its call chain from the leaf (so
a `memmove` called by serde_json counts as a copy, and serde_json called
by the chat handler as JSON). Prints each layer's share of all samples.
Exit status 0: the report is informational.
"""
import collections
import re
import subprocess
import sys

# First match wins, leaf first: the order puts the narrow layers (the
# allocator, copies) before the wide ones (the gateway's own code).
LAYERS = [
    ("allocator (mimalloc)", r" (mi_|_mi_)"),
    ("copies (memmove/memcpy)", r"__mem(move|cpy|set)"),
    ("JSON (serde_json)", r"serde_json|serde_core|serde::"),
    ("SQLite", r" sqlite3|rusqlite"),
    ("audit (event, chain, writer)", r"palisade_audit"),
    ("policy decision", r"palisade_policy"),
    ("metrics (prometheus)", r"prometheus"),
    ("hyper, server side", r"hyper::proto::h1::role::Server|hyper::proto::h1::dispatch|hyper::server"),
    ("upstream client (hyper client, pool)", r"hyper::proto::h1::role::Client|hyper::client|palisade_gateway::http_client"),
    ("axum and tower", r" <?axum| <?tower"),
    ("tokio (scheduler, I/O, timers)", r" <?tokio|mio::"),
    ("the gateway's own code", r"palisade_gateway"),
]


def samples(path):
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,ip,sym,dso"],
        capture_output=True, text=True, check=True,
    ).stdout
    chain = None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            if chain:
                yield chain
            chain = []
        elif chain is not None:
            chain.append(line.strip())
    if chain:
        yield chain


def main():
    counts = collections.Counter()
    total = 0
    for chain in samples(sys.argv[1]):
        total += 1
        if "kernel.kallsyms" in chain[0]:
            counts["kernel (system calls, interrupts)"] += 1
            continue
        layer = "other user space"
        for frame in chain:
            hit = next((name for name, rx in LAYERS if re.search(rx, frame)), None)
            if hit:
                layer = hit
                break
        counts[layer] += 1
    if not total:
        print("no samples (was the gateway busy?)")
        return
    print(f"by layer ({total} samples):")
    for name, n in counts.most_common():
        print(f"  {100 * n / total:5.1f} %  {name}")


main()
