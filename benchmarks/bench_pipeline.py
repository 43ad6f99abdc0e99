"""What the live pipeline costs: end-to-end volumes/s against the Refocuser alone.

Usage::

    python benchmarks/bench_pipeline.py [--frames 20] [--size 256] [--planes -8:8:2]
                                        [--model default] [--backend auto]
                                        [--rate-frames 200] [--json]

On the simulated microscope (real clock, 10 ms exposures, a centred ``size``² camera
region, so the pixel size stays the default model's):

1. ``frames`` frames are recorded without a model; the Refocuser alone then refocuses
   exactly these frames one after the other (after one warm-up volume): its
   volumes/s is the ceiling.
2. The same number of frames goes through the whole pipeline with ``policy="all"``
   and the volumes saved: camera → raw file → queue (read-back from the raw file
   where needed) → Refocuser on the worker thread → volume file. End-to-end
   volumes/s = volumes / (last volume ready − first frame arrived).
   **Overhead ratio** = Refocuser-alone rate / end-to-end rate (1.00 = free).
3. The acquisition rate (frames/s from the camera's timestamps, ``rate-frames``
   frames) without a pipeline, with the pipeline and the real model
   (``policy="latest"``: the worker is busy all the time), and with the pipeline and
   a stand-in that sleeps as long as the model computes (the pipeline's own cost,
   without the model competing for the CPU).

Prints a table (or ``--json``); quote figures with the machine they came from. On
a small CPU the simulator's rendering and the model share the cores, which the
"real model" acquisition rate shows; a GPU and a real camera do not compete that way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import tifffile
from _standins import SleepLikeTheModel, machine_description, simulator_scope

import deepz
from deepz_live.acquisition import LiveSession


def run(args: argparse.Namespace) -> dict[str, Any]:
    from deepz_live.inference import Refocuser

    planes = deepz.parse_planes(args.planes)
    folder = Path(tempfile.mkdtemp(prefix="deepz-bench-"))
    results: dict[str, Any] = {
        "machine": machine_description(),
        "model": args.model,
        "size": args.size,
        "planes": len(planes),
        "frames": args.frames,
    }
    with simulator_scope(args.size) as scope:
        # 1. the frames, then the Refocuser alone on exactly those frames
        raw = folder / "frames.ome.tif"
        deepz.acquire_timelapse(
            scope, frames=args.frames, interval_ms=0, exposure_ms=10, out=raw
        )
        frames = tifffile.imread(raw)
        refocuser = Refocuser(args.model, backend=args.backend)
        results["backend"] = refocuser.backend
        refocuser.refocus(frames[0], planes)  # warm-up, as the pipeline does
        seconds = []
        for frame in frames:
            start = time.perf_counter()
            refocuser.refocus(frame, planes)
            seconds.append(time.perf_counter() - start)
        del refocuser
        alone = len(seconds) / sum(seconds)
        results["refocuser_volumes_per_s"] = alone
        results["refocuser_ms_per_volume"] = 1000 * statistics.median(seconds)

        # 2. the whole pipeline, every frame, volumes saved
        session = deepz.live_refocus(
            scope,
            frames=args.frames,
            out=folder / "live.ome.tif",
            model=args.model,
            planes_um=planes,
            policy="all",
            save_volumes=True,
            backend=args.backend,
            exposure_ms=10,
        )
        with session:
            summary = session.wait()
        results["pipeline_volumes_per_s"] = summary.volumes_per_s
        results["pipeline_latency_p50_ms"] = summary.latency_p50_ms
        results["pipeline_frames_read_back"] = summary.frames_read_back
        results["overhead_ratio"] = alone / summary.volumes_per_s

        # 3. acquisition rate without and with the pipeline
        settings = {"frames": args.rate_frames, "interval_ms": 0, "exposure_ms": 10}
        bare = deepz.acquire_timelapse(scope, out=folder / "bare.ome.tif", **settings)
        results["acquisition_fps"] = bare.fps
        session = deepz.live_refocus(
            scope,
            out=folder / "with-model.ome.tif",
            model=args.model,
            planes_um=planes,
            policy="latest",
            backend=args.backend,
            **settings,
        )
        with session:
            with_model = session.wait()
        results["acquisition_fps_with_model"] = with_model.fps
        results["volumes_while_acquiring"] = with_model.volumes
        model_s = results["refocuser_ms_per_volume"] / 1e3
        stand_in = SleepLikeTheModel(planes, model_s, copy_frame=False)
        with LiveSession(
            scope,
            stand_in,
            out=folder / "with-stand-in.ome.tif",
            policy="latest",
            **settings,
        ) as session:
            session.start()
            with_stand_in = session.wait()
        results["acquisition_fps_with_stand_in"] = with_stand_in.fps
    return results


def _print(results: dict[str, Any]) -> None:
    bare = results["acquisition_fps"]
    print(
        f"deepz-live pipeline benchmark: model {results['model']} "
        f"({results['backend']}), {results['size']}² frames × {results['planes']} "
        f"planes, {results['frames']} frames\nmachine: {results['machine']}\n"
    )
    rows = [
        ("Refocuser alone", f"{results['refocuser_volumes_per_s']:.3f} volumes/s"),
        (
            "pipeline end-to-end (all, volumes saved)",
            f"{results['pipeline_volumes_per_s']:.3f} volumes/s",
        ),
        ("overhead ratio (alone / pipeline)", f"{results['overhead_ratio']:.3f}"),
        ("acquisition, no pipeline", f"{bare:.1f} frames/s"),
        (
            "acquisition + pipeline, sleeping stand-in",
            f"{results['acquisition_fps_with_stand_in']:.1f} frames/s "
            f"({results['acquisition_fps_with_stand_in'] / bare:.2f}×)",
        ),
        (
            "acquisition + pipeline, real model",
            f"{results['acquisition_fps_with_model']:.1f} frames/s "
            f"({results['acquisition_fps_with_model'] / bare:.2f}×)",
        ),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--planes", default="-8:8:2")
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--rate-frames", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        print(json.dumps(results))
    else:
        _print(results)


if __name__ == "__main__":
    main()
