"""Frames per second of the simulated microscope (worm specimen, 512×512 by default).

Usage::

    python benchmarks/bench_simulator.py [--frames 200] [--kind worm] [--binning 1]

Prints one line per mode:

* ``snap``: `core.snapImage()` in a loop (render + camera noise per frame);
* ``stream``: a useq time-lapse with interval 0 (camera sequence acquisition through
  the pymmcore-plus MDA runner), frames counted in ``frameReady``;
* ``zstack``: a 21-plane z-stack (±10 µm, 1 µm steps): every plane is a new focus, so
  the per-focus object images are recomputed (the slow path), planes per second.

By default the camera runs on the simulated clock, so the figure is the simulator's own
throughput (rendering, noise, Micro-Manager plumbing). ``--clock real`` adds the wait
for each exposure (``--exposure-ms``, default 10 ms), as at a real camera.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time

import useq

from deepz_live.acquisition import SIMULATOR_CONFIG, DeepzCore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--kind", default="worm")
    parser.add_argument("--binning", type=int, default=1)
    parser.add_argument("--clock", choices=["simulated", "real"], default="simulated")
    parser.add_argument("--exposure-ms", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    core = DeepzCore()
    core.loadSystemConfiguration(str(SIMULATOR_CONFIG))
    core.setProperty("Camera", "Clock", args.clock)
    core.setExposure(args.exposure_ms)
    core.setProperty("Camera", "Binning", args.binning)
    core.setProperty("Specimen", "Kind", args.kind)
    core.setPosition(float(core.getProperty("Specimen", "FocusZ")))
    core.snapImage()  # builds the per-focus kernels once (not part of the rate)
    shape = (core.getImageHeight(), core.getImageWidth())

    t0 = time.perf_counter()
    for _ in range(args.frames):
        core.snapImage()
        core.getImage()
    snap_fps = args.frames / (time.perf_counter() - t0)

    count = [0]
    core.mda.events.frameReady.connect(lambda *_: count.__setitem__(0, count[0] + 1))
    t0 = time.perf_counter()
    core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": args.frames}))
    stream_fps = count[0] / (time.perf_counter() - t0)

    count[0] = 0
    t0 = time.perf_counter()
    core.mda.run(useq.MDASequence(z_plan={"range": 20, "step": 1}))
    zstack_pps = count[0] / (time.perf_counter() - t0)

    core.unloadAllDevices()
    del core
    gc.collect()

    result = {
        "kind": args.kind,
        "shape": list(shape),
        "frames": args.frames,
        "snap_fps": round(snap_fps, 1),
        "stream_fps": round(stream_fps, 1),
        "zstack_planes_per_s": round(zstack_pps, 2),
        "clock": args.clock,
        "exposure_ms": args.exposure_ms,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"simulator, {args.kind}, {shape[0]}×{shape[1]}, {args.frames} frames, "
            f"{args.clock} clock, {args.exposure_ms:g} ms exposure"
        )
        print(f"  snap   : {snap_fps:6.1f} frames/s")
        print(f"  stream : {stream_fps:6.1f} frames/s")
        print(f"  zstack : {zstack_pps:6.2f} planes/s (new focus every plane)")
        print(f"  machine: {result['machine']}")


if __name__ == "__main__":
    main()
