#!/usr/bin/env python3
"""Turn the criterion results of `cargo bench -p ls-core` into the ratios the targets use."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
res = {}
for bj in root.rglob("new/benchmark.json"):
    meta = json.loads(bj.read_text())
    est = json.loads((bj.parent / "estimates.json").read_text())
    res[meta["full_id"]] = est["mean"]["point_estimate"] / 1e9  # seconds

def get(k):
    if k not in res:
        print(f"  (missing {k})")
    return res.get(k)

def line(label, value, target=None, ok=None):
    t = f"   target {target}: {'MET' if ok else 'NOT MET'}" if target else ""
    print(f"  {label:<58} {value}{t}")

print("Benchmarks (mean of criterion samples, this run):")
a = get("anchor/rsa2048_sign+decrypt")
so = get("ours/1KiB/seal+open")
if a and so:
    line("anchor: RSA-2048 sign + decrypt", f"{a*1e3:.3f} ms")
    line("1 KiB seal+open", f"{so*1e3:.3f} ms = {so/a:.2f}x anchor", "<= 1.2x", so / a <= 1.2)
for size in ["1KiB", "1MiB", "100MiB"]:
    for op in ["seal", "open"]:
        o, s = get(f"ours/{size}/{op}"), get(f"openssl_cms/{size}/{op}")
        if o and s:
            tgt = ">= 3x" if size == "100MiB" else None
            line(f"{size} {op}: ours {o*1e3:.1f} ms vs openssl cms {s*1e3:.1f} ms", f"{s/o:.1f}x faster", tgt, s / o >= 3)
for size, n in [("1MiB", 1 << 20), ("100MiB", 100 << 20)]:
    c = get(f"ours_compressed/{size}/seal")
    if c:
        mbs = n / c / 1e6
        line(f"compressing seal, business text {size}", f"{mbs:.0f} MB/s", ">= 100 MB/s" if size == "100MiB" else None, mbs >= 100)

print("AS4 message layer:")
r, c = get("as4/anchor_rsa2048_sign"), get("as4/c14n+sha256_messaging_header")
if r and c:
    line("C14N + SHA-256 of a typical eb:Messaging header", f"{c*1e6:.1f} us = {c/r*100:.1f}% of one RSA-2048 signature ({r*1e6:.0f} us)", "well under 1 signature", c < r / 10)
for size in ["1KiB", "1MiB", "50MiB"]:
    sha, clone = get(f"as4/{size}/sha256"), get(f"as4/{size}/input_clone") or 0.0
    for op in ["build+sign", "verify", "build+sign+encrypt", "decrypt+verify"]:
        t = get(f"as4/{size}/{op}")
        if sha and t:
            # every bench clones its input (payload or received body) inside the timed closure.
            own = t - clone
            if size == "1KiB":
                line(f"{size} {op}", f"{own*1e3:.3f} ms")
                continue
            speed = sha / own
            tgt = ">= 0.5x SHA-256" if size == "50MiB" and op in ("build+sign", "verify") else None
            line(f"{size} {op}: {own*1e3:.2f} ms (SHA-256 alone {sha*1e3:.2f} ms)", f"{speed:.2f}x SHA-256 speed", tgt, speed >= 0.5)
