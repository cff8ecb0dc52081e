#!/usr/bin/env python3
"""Plot the samples that bench/soak.py wrote: resident memory, store size, hook latency and
queue depths over time, one panel each.

    bench/plot_soak.py SOAK.csv OUT.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    with open(sys.argv[1]) as f:
        rows = list(csv.DictReader(f))
    seconds = [int(r["seconds"]) for r in rows]
    figure, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    axes[0].plot(seconds, [int(r["rss_kib"]) / 1024 for r in rows], label="VmRSS")
    axes[0].plot(seconds, [int(r["hwm_kib"]) / 1024 for r in rows], label="VmHWM", linestyle="--")
    axes[0].set_ylabel("MiB")
    axes[0].legend()
    axes[1].plot(seconds, [int(r["store_bytes"]) / 2**20 for r in rows])
    axes[1].set_ylabel("data dir, MiB (du -sb)")
    axes[2].plot(seconds, [float(r["hook_p50_ms"]) for r in rows], label="p50")
    axes[2].plot(seconds, [float(r["hook_p99_ms"]) for r in rows], label="p99")
    axes[2].set_ylabel("hook latency, ms")
    axes[2].legend()
    for column in ("rules_queue", "outbox_queue", "clears_queue"):
        axes[3].plot(seconds, [float(r[column]) for r in rows], label=column.replace("_", " "))
    axes[3].set_ylabel("queue depth")
    axes[3].set_xlabel("seconds since start (100 events/s)")
    axes[3].legend()
    figure.suptitle("bouncewatch soak, 2026-12-04, 2-core shared VM")
    figure.tight_layout()
    figure.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()
