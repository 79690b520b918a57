#!/usr/bin/env python3
"""Pick the committed seeds of a fuzz target from its minimised corpus (scripts/fuzz-long.sh).

fuzz/seeds/<target>/ holds hand-written seeds (any name), regression inputs (regress-*) and
generated ones (gen-<sha256 prefix>). This replaces the generated ones with a small set taken
from the corpus: the inputs that add the most coverage (libFuzzer features, from a -merge=1
control file) over the hand-written and regression seeds, greedily, up to --max-files files and
--max-kb KiB. An input is never taken when it holds a private key or shares 64 bytes or more
with a file of the fixtures folder that our own files (--own: sources, hand-written seeds) do not
also hold (fixtures are not ours to copy, nor byte-for-byte derivations of them); inputs over
16 KiB are not taken either.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys

WINDOW = 64  # bytes in common with a fixture that disqualify an input
STRIDE = 16  # fixture windows are indexed every STRIDE bytes (a shared run of WINDOW+STRIDE-1 is always seen)
MAX_INPUT = 16 * 1024


def fixture_index(folder):
    index = set()
    if not os.path.isdir(folder):
        return index
    for base, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(base, name), "rb") as f:
                data = f.read()
            for i in range(0, max(len(data) - WINDOW + 1, 0), STRIDE):
                index.add(hash(data[i:i + WINDOW]))
    return index


def forget_own(index, folders):
    """Drop from the fixture index the windows our own files hold too (the namespace URIs and
    OIDs of the standards, in ls-core's source and our hand-written seeds): sharing those says
    nothing about where an input came from."""
    for folder in folders:
        for base, _, files in os.walk(folder):
            for name in files:
                if name.startswith("gen-"):
                    continue
                with open(os.path.join(base, name), "rb") as f:
                    data = f.read()
                for i in range(len(data) - WINDOW + 1):
                    index.discard(hash(data[i:i + WINDOW]))


def shares_fixture_bytes(data, index):
    if not index:
        return False
    return any(hash(data[i:i + WINDOW]) in index for i in range(len(data) - WINDOW + 1))


def features(binary, scratch, base_dir, cand_dir):
    """{path: set of features} from a libFuzzer merge control file; base files first."""
    control = os.path.join(scratch, "merge.control")
    out = os.path.join(scratch, "merged")
    os.makedirs(out, exist_ok=True)
    # The base seeds are the first (initial) corpus: copy them into the output folder.
    for name in os.listdir(base_dir):
        shutil.copy(os.path.join(base_dir, name), os.path.join(out, name))
    subprocess.run(
        [binary, "-merge=1", "-merge_control_file=" + control, "-rss_limit_mb=2048", out, cand_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    with open(control) as f:
        lines = f.read().split("\n")
    nfiles = int(lines[0])
    files = lines[2:2 + nfiles]
    ft = {}
    for line in lines[2 + nfiles:]:
        if line.startswith("FT "):
            parts = line.split()
            ft[files[int(parts[1])]] = set(parts[2:])
    return ft


def main():
    ap = argparse.ArgumentParser()
    for a in ("--target", "--binary", "--corpus", "--seeds", "--fixtures", "--scratch"):
        ap.add_argument(a, required=True)
    ap.add_argument("--own", action="append",
                    help="a folder of our own files (default: ls-core/src, ls-client/src, ls-server/src, fuzz/seeds)")
    ap.add_argument("--max-files", type=int, default=24)
    ap.add_argument("--max-kb", type=int, default=192)
    o = ap.parse_args()
    if o.own is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        o.own = [os.path.join(root, d) for d in ("ls-core/src", "ls-client/src", "ls-server/src", "fuzz/seeds")]

    shutil.rmtree(o.scratch, ignore_errors=True)
    base_dir = os.path.join(o.scratch, "base")
    cand_dir = os.path.join(o.scratch, "candidates")
    os.makedirs(base_dir)
    os.makedirs(cand_dir)
    os.makedirs(o.seeds, exist_ok=True)
    kept = [n for n in os.listdir(o.seeds) if not n.startswith("gen-")]
    for n in kept:
        shutil.copy(os.path.join(o.seeds, n), os.path.join(base_dir, n))

    index = fixture_index(o.fixtures)
    forget_own(index, o.own)
    if not os.path.isdir(o.fixtures):
        print(f"fuzz-seeds: {o.target}: no fixtures at {o.fixtures}: inputs not checked against them")
    refused = {"large": 0, "key": 0, "fixture": 0}
    for name in sorted(os.listdir(o.corpus)):
        with open(os.path.join(o.corpus, name), "rb") as f:
            data = f.read()
        if len(data) > MAX_INPUT:
            refused["large"] += 1
        elif b"PRIVATE KEY" in data:
            refused["key"] += 1
        elif shares_fixture_bytes(data, index):
            refused["fixture"] += 1
        else:
            with open(os.path.join(cand_dir, name), "wb") as f:
                f.write(data)

    ft = features(o.binary, o.scratch, base_dir, cand_dir)
    covered = set()
    cands = {}
    for path, feats in ft.items():
        if os.path.dirname(path) == cand_dir:
            cands[path] = feats
        else:
            covered |= feats

    chosen, total = [], 0
    while len(chosen) < o.max_files and cands:
        best = max(cands, key=lambda p: (len(cands[p] - covered), -os.path.getsize(p)))
        gain = len(cands[best] - covered)
        size = os.path.getsize(best)
        del cands[best]
        if gain == 0:
            break
        if total + size > o.max_kb * 1024:
            continue
        chosen.append(best)
        covered |= ft[best]
        total += size

    for n in os.listdir(o.seeds):
        if n.startswith("gen-"):
            os.remove(os.path.join(o.seeds, n))
    for p in chosen:
        with open(p, "rb") as f:
            data = f.read()
        name = "gen-" + hashlib.sha256(data).hexdigest()[:16]
        with open(os.path.join(o.seeds, name), "wb") as f:
            f.write(data)
    print(f"fuzz-seeds: {o.target}: {len(chosen)} generated seeds ({total} bytes) from "
          f"{len(ft) - len(kept)} corpus inputs; {len(kept)} hand-written/regression seeds kept; "
          f"not taken: {refused['large']} over {MAX_INPUT} bytes, {refused['key']} with a private key, "
          f"{refused['fixture']} sharing bytes with a fixture")
    return 0


if __name__ == "__main__":
    sys.exit(main())
