"""Soak: a long simulated live-refocusing run, watched for leaks, lost frames and lag.

Usage::

    python benchmarks/bench_soak.py [--minutes 60] [--interval-ms 200] [--size 128]
                                    [--planes -4:4:4] [--model default-fast]
                                    [--backend auto] [--buffer-mb 32] [--out runs/soak]
                                    [--json]

One `deepz.live_refocus` run on the simulated microscope (real clock, a centred
``size``² camera region, 10 ms exposures) with ``policy="all"`` and the volumes saved:
every frame must be written and refocused. Every ``--report-s`` seconds it prints the
process's resident memory (``VmRSS``), the frames taken and refocused, the queue depth
and the recent latency p99. At the end it reads the raw and volume files back and
reports:

* **memory growth** after warm-up: the last sample's resident memory against the
  median of the samples in the second ``--report-s`` window (goal ≤ 5 %). The
  camera's circular buffer (pymmcore-plus: 1,024 MiB by default, one ``np.empty``
  pool) is touched page by page as frames go round it, so resident memory climbs
  until it has gone round once, without a leak; ``--buffer-mb`` (default 32) keeps
  that inside the warm-up;
* **frames lost**: frames asked for minus raw frames on disk, and raw frames minus
  volumes on disk (goal 0 and 0);
* **latency p99** per window (it must not climb: a growing backlog shows here).

Quote the figures with the machine they came from. The files are removed at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import tifffile
from _standins import machine_description, simulator_scope

import deepz


def resident_mib() -> float:
    """This process's resident memory (MiB) from ``/proc/self/status`` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: the soak needs Linux")


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    frames = int(args.minutes * 60_000 / args.interval_ms)
    samples: list[dict[str, Any]] = []
    done = threading.Event()
    started = time.perf_counter()
    with simulator_scope(args.size) as scope:
        scope.core.setCircularBufferMemoryFootprint(args.buffer_mb)
        plan = deepz.RunPlan(
            out=out / "soak.ome.tif",
            frames=frames,
            interval_ms=args.interval_ms,
            exposure_ms=10.0,
            model=args.model,
            planes_um=args.planes,
            policy="all",
            save_volumes=True,
            backend=args.backend,
        )
        with deepz.live_refocus(scope, plan) as session:

            def sample() -> None:
                while not done.wait(args.report_s):
                    stats = session.stats()
                    row = {
                        "t_s": round(time.perf_counter() - started, 1),
                        "rss_mib": round(resident_mib(), 1),
                        "frames": stats.frames_acquired,
                        "volumes": stats.volumes,
                        "queue_depth": stats.queue_depth,
                        "frames_in_memory": stats.frames_in_memory,
                        "latency_p99_ms": stats.latency_p99_ms,
                    }
                    samples.append(row)
                    if not args.json:
                        print(
                            f"{row['t_s']:8.1f} s  RSS {row['rss_mib']:7.1f} MiB  "
                            f"frames {row['frames']:6d}  volumes {row['volumes']:6d}  "
                            f"queue {row['queue_depth']:4d}  "
                            f"p99 {row['latency_p99_ms'] or float('nan'):7.1f} ms",
                            flush=True,
                        )

            watcher = threading.Thread(target=sample, name="soak-sampler", daemon=True)
            watcher.start()
            try:
                summary = session.wait()
            finally:
                done.set()
                watcher.join()
    with tifffile.TiffFile(plan.out) as raw:
        raw_frames = len(raw.pages)
    assert summary.volume_output is not None
    with tifffile.TiffFile(summary.volume_output) as volumes:
        volume_frames = volumes.series[0].shape[0]  # (T, Z, Y, X), not read
    warm = [
        s["rss_mib"] for s in samples if args.report_s < s["t_s"] <= 2 * args.report_s
    ]
    baseline = statistics.median(warm) if warm else samples[0]["rss_mib"]
    final = samples[-1]["rss_mib"] if samples else resident_mib()
    result = {
        "machine": machine_description(),
        "minutes": args.minutes,
        "frames_asked": frames,
        "raw_frames_on_disk": raw_frames,
        "volumes_on_disk": volume_frames,
        "frames_lost": frames - raw_frames,
        "frames_not_refocused": raw_frames - volume_frames,
        "rss_after_warmup_mib": round(baseline, 1),
        "rss_final_mib": round(final, 1),
        "memory_growth_percent": round(100 * (final - baseline) / baseline, 2),
        "latency_p99_ms_by_window": [
            None if s["latency_p99_ms"] is None else round(s["latency_p99_ms"], 1)
            for s in samples
        ],
        "latency_p99_ms_run": summary.latency_p99_ms,
        "volumes_per_s": summary.volumes_per_s,
        "circular_buffer_mb": args.buffer_mb,
        "settings": plan.to_metadata(),
    }
    if not args.keep:
        shutil.rmtree(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--interval-ms", type=float, default=200.0)
    parser.add_argument("--size", type=int, default=128, help="camera region (px)")
    parser.add_argument("--planes", default="-4:4:4")
    parser.add_argument("--model", default="default-fast")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--report-s", type=float, default=60.0)
    parser.add_argument(
        "--buffer-mb", type=int, default=32, help="camera circular buffer (MiB)"
    )
    parser.add_argument("--out", default="runs/soak")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1))


if __name__ == "__main__":
    main()
