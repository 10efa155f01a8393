"""Helpers shared by the reference scripts: one JSON result line on a clean stdout."""
import json
import os
import resource
import statistics
import sys


def core_count():
    # Affinity, not os.cpu_count(): a container or taskset may allow fewer cores than exist.
    return len(os.sched_getaffinity(0))


def keep_stdout_clean():
    """Point fd 1 at stderr, so chatter from C++ libraries (TF, oneDNN) can't land among
    the results; returns a file on the real stdout for the JSON line."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return real


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def record(tool, bench, backend, runs, threads, *, batch=None, images=None, rss_mb=None):
    """The schema documented in README.md; images_per_sec counts real images."""
    median = statistics.median(runs)
    rec = {"tool": tool, "bench": bench, "backend": backend}
    if batch is not None:
        rec["batch"] = batch
        rec["images_per_sec"] = batch / median
    if images is not None:
        rec["images"] = images
        rec["images_per_sec"] = images / median
    rec.update(runs=runs, median_s=median, threads=threads,
               peak_rss_mb=round(rss_mb if rss_mb is not None else peak_rss_mb(), 1))
    # Keep a stable key order: tool, bench, backend, batch|images, runs, median_s, ...
    order = ["tool", "bench", "backend", "batch", "images", "runs", "median_s",
             "images_per_sec", "threads", "peak_rss_mb"]
    return {k: rec[k] for k in order if k in rec}


def emit(out, rec):
    out.write(json.dumps(rec) + "\n")
    out.flush()
