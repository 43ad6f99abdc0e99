"""Does the Qt panel slow acquisition? The same live run headless, shown, and rotated.

Usage (the views need OpenGL; on a server run it under Xvfb)::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \\
        python benchmarks/bench_panel.py [--frames 300] [--size 256] [--planes -8:8:2]
                                         [--repeats 3] [--model default]
                                         [--backend auto] [--json]

One live run: the simulated microscope (real clock, 10 ms exposures, interval 0, a
centred ``size``² camera region), ``policy="latest"``, the bundled model refocusing
each frame it takes into ``planes`` planes. Its acquisition rate (frames/s from the
camera's timestamps, `LiveSummary.fps`) is measured in three conditions:

a. headless: `deepz.live_refocus` only; the panel's window stays open but idle (it
   receives nothing, so it draws nothing; hiding and re-showing it between runs
   under Xvfb, without a window manager, sometimes left the 3-D canvas unpainted
   for the rest of the benchmark);
b. panel: the same run started with the panel's Start button, the panel showing it
   (3-D view, slices, raw frame, telemetry; redraws throttled to ~30 Hz);
c. panel + rotating: as b, while a QTimer turns the 3-D view's turntable camera
   (azimuth +3° every 33 ms, i.e. continuously, ~30 Hz, as a user dragging it).

and each with two processors: the model itself, and a stand-in that sleeps as long
as the model takes per volume (measured first). On a small CPU the simulated
camera, the model and software OpenGL (Xvfb's llvmpipe) share the same cores; the
stand-in leaves the CPU to the camera and the panel, which isolates the panel's own
cost. Conditions are alternated (a, b, c, a, b, c, ...) and medians reported, since a
shared machine's load drifts; one run of each condition first warms up (model files,
the ONNX cache, OpenGL programs and textures). The 3-D canvas's draws per second and
the volumes shown per second are counted too (the throttle caps data redraws at
~30 Hz; raw frames are shown at up to 30 per second).

Prints a Markdown table with the ratios to headless, the machine, the OpenGL renderer
and the load average; quote figures with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _standins import SleepLikeTheModel, machine_description

import deepz

CONDITIONS = ("headless", "panel", "panel + rotating")
ROTATE_INTERVAL_MS = 33
ROTATE_STEP_DEG = 3.0


def _model_seconds(scope: Any, args: argparse.Namespace, planes: Any) -> float:
    """Median time of one volume by the Refocuser alone, after a warm-up."""
    from deepz_live.inference import Refocuser

    scope.core.snapImage()
    frame = scope.core.getImage()
    refocuser = Refocuser(args.model, backend=args.backend)
    refocuser.refocus(frame, planes)
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        refocuser.refocus(frame, planes)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


class _Bench:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        from deepz_live.gui import DeepzPanel

        self.args = args
        self.folder = folder
        self.planes = deepz.parse_planes(args.planes)
        self.app = QApplication.instance() or QApplication(sys.argv[:1])
        self.scope = deepz.open_microscope()
        core = self.scope.core
        core.setProperty("Camera", "Clock", "real")
        width = int(core.getImageWidth())
        if args.size < width:
            offset = (width - args.size) // 2
            core.setROI(offset, offset, args.size, args.size)
        self.scope.focus_on_specimen()
        self.processor: Any = args.model  # a model name, or the stand-in
        self.panel = DeepzPanel(self._open_session)
        self.panel.resize(1500, 900)
        controls = self.panel.controls
        controls.continuous_box.setChecked(False)
        controls.frames_box.setValue(args.frames)
        controls.interval_box.setValue(0.0)
        controls.exposure_box.setValue(10.0)
        controls.plane_from_box.setValue(self.planes[0])
        controls.plane_to_box.setValue(self.planes[-1])
        controls.plane_step_box.setValue(
            (self.planes[-1] - self.planes[0]) / max(len(self.planes) - 1, 1)
        )
        controls.backend_box.setCurrentText(args.backend)
        controls.policy_box.setCurrentText("latest")
        view = self.panel.volume_view
        self.gl = view.gl_available
        self.gl_error = view.gl_error
        self.draws = 0
        if self.gl:
            view.canvases()[0].events.draw.connect(self._count_draw)
        self.rotate_timer = QTimer()
        self.rotate_timer.setInterval(ROTATE_INTERVAL_MS)
        self.rotate_timer.timeout.connect(self._rotate)

    def _count_draw(self, event: Any) -> None:
        self.draws += 1

    def _rotate(self) -> None:
        view = self.panel.volume_view
        azimuth, elevation = view.camera_angles()
        view.set_camera_angles(azimuth + ROTATE_STEP_DEG, elevation)

    def _open_session(self, settings: Any, *, snap: bool = False) -> Any:
        """The panel's session factory: the same run as the headless condition."""
        return self._session(settings.out)

    def _session(self, out: Path) -> Any:
        return deepz.live_refocus(
            self.scope,
            frames=self.args.frames,
            out=out,
            processor=self.processor,  # its planes are self.planes
            policy="latest",
            interval_ms=0.0,
            exposure_ms=10.0,
            led_intensity=20.0,
            backend=self.args.backend,
            start=False,
        )

    def gl_renderer(self) -> str:
        if not self.gl:
            return f"none ({self.gl_error})"
        from vispy.gloo import gl

        self.panel.show()
        self.app.processEvents()
        canvas = self.panel.volume_view.canvases()[0]
        canvas.set_current()
        return str(gl.glGetParameter(gl.GL_RENDERER))

    def run(self, condition: str) -> dict[str, Any]:
        out = self.folder / "run.ome.tif"
        if condition == "headless":
            self.panel.show()
            self.app.processEvents()
            with self._session(out) as session:
                session.start()
                summary = session.wait()
            shown, draws, seconds = None, None, None
        else:
            summary, shown, draws, seconds = self._run_in_panel(
                rotating=condition == "panel + rotating"
            )
        for path in self.folder.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if summary is None or getattr(summary, "error", None):
            raise RuntimeError(f"the {condition} run failed: {summary}")
        return {
            "fps": summary.fps,
            "frames": summary.frames,
            "volumes": summary.volumes,
            "volumes_shown_per_s": shown,
            "draws_3d_per_s": draws,
            "panel_seconds": seconds,
        }

    def _run_in_panel(self, *, rotating: bool) -> tuple[Any, float, float, float]:
        from qtpy.QtCore import QEventLoop

        panel = self.panel
        panel.show()
        panel.volume_view.clear()
        controls = panel.controls
        controls.output_field.edit.setText(str(self.folder / "run.ome.tif"))
        controller = panel.controller
        assert controller is not None
        loop = QEventLoop()
        ended: list[Any] = []
        volumes_shown = [0]

        def finished(summary: Any) -> None:
            ended.append(summary)
            loop.quit()

        def failed(message: str) -> None:
            ended.append(None)
            print(f"run failed: {message}", file=sys.stderr)
            loop.quit()

        def count_volume(*_: Any) -> None:
            volumes_shown[0] += 1

        controller.run_finished.connect(finished)
        controller.run_failed.connect(failed)
        controller.volume_ready.connect(count_volume)
        self.app.processEvents()
        self.draws = 0
        start = time.perf_counter()
        if rotating:
            self.rotate_timer.start()
        controls.start_button.click()  # as a user does
        if not ended:
            loop.exec()
        seconds = time.perf_counter() - start
        self.rotate_timer.stop()
        controller.run_finished.disconnect(finished)
        controller.run_failed.disconnect(failed)
        controller.volume_ready.disconnect(count_volume)
        draws = self.draws / seconds if self.gl else float("nan")
        # let the session's close (on its own thread) finish before the next run
        deadline = time.monotonic() + 10
        while controller.state != "idle" and time.monotonic() < deadline:
            self.app.processEvents()
            time.sleep(0.01)
        time.sleep(0.5)
        return ended[0], volumes_shown[0] / seconds, draws, seconds

    def close(self) -> None:
        self.panel.close()
        self.scope.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="deepz-bench-panel-"))
    bench = _Bench(args, folder)
    try:
        model_s = _model_seconds(bench.scope, args, bench.planes)
        results: dict[str, Any] = {
            "machine": machine_description(),
            "qt_platform": bench.app.platformName(),
            "gl_renderer": bench.gl_renderer(),
            "model": args.model,
            "backend": args.backend,
            "size": args.size,
            "planes": len(bench.planes),
            "frames": args.frames,
            "repeats": args.repeats,
            "model_ms_per_volume": 1000 * model_s,
            "load_average_before": os.getloadavg(),
            "runs": [],
        }
        processors = {
            "model": args.model,
            "stand-in": SleepLikeTheModel(bench.planes, model_s, copy_frame=True),
        }
        bench.processor = args.model
        for condition in CONDITIONS:  # warm-up: ONNX cache, GL programs, textures
            bench.run(condition)
        for repeat in range(args.repeats):
            for name, processor in processors.items():
                for condition in CONDITIONS:
                    bench.processor = processor
                    record = bench.run(condition)
                    record.update(processor=name, condition=condition, repeat=repeat)
                    results["runs"].append(record)
                    draws = record["draws_3d_per_s"]
                    if condition != "headless" and bench.gl and not draws:
                        print("warning: the 3-D view did not draw", file=sys.stderr)
                    print(
                        f"{name:8s} {condition:17s} {record['fps']:.1f} frames/s, "
                        f"{record['volumes']} volumes"
                        + ("" if draws is None else f", 3-D draws {draws:.1f}/s"),
                        file=sys.stderr,
                    )
        results["load_average_after"] = os.getloadavg()
        return results
    finally:
        bench.close()
        shutil.rmtree(folder, ignore_errors=True)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None and r[key] == r[key]]
    return statistics.median(values) if values else None


def _print(results: dict[str, Any]) -> None:
    print(
        f"deepz-live panel benchmark: model {results['model']} "
        f"(backend {results['backend']}, {results['model_ms_per_volume']:.0f} ms per "
        f"volume alone), {results['size']}² frames × {results['planes']} planes, "
        f"{results['frames']} frames per run, policy latest, interval 0, "
        f"median of {results['repeats']} alternated runs\n"
        f"machine: {results['machine']}; Qt platform {results['qt_platform']}, "
        f"OpenGL {results['gl_renderer']}\n"
        "load average (1, 5, 15 min) before "
        f"{', '.join(f'{v:.2f}' for v in results['load_average_before'])}, after "
        f"{', '.join(f'{v:.2f}' for v in results['load_average_after'])}\n"
    )
    short = [r for r in results["runs"] if r["frames"] != results["frames"]]
    print(
        f"raw frames written: all {results['frames']} in every run\n"
        if not short
        else f"raw frames written: fewer than {results['frames']} in {len(short)} "
        "runs (stopped early?)\n"
    )
    print(
        "| processor | condition | frames/s | × headless | volumes per run | "
        "volumes shown/s | 3-D draws/s |\n|---|---|---|---|---|---|---|"
    )
    for processor in ("model", "stand-in"):
        runs = [r for r in results["runs"] if r["processor"] == processor]
        headless = _median([r for r in runs if r["condition"] == "headless"], "fps")
        for condition in CONDITIONS:
            chosen = [r for r in runs if r["condition"] == condition]
            fps = _median(chosen, "fps")
            volumes = _median(chosen, "volumes")
            shown = _median(chosen, "volumes_shown_per_s")
            draws = _median(chosen, "draws_3d_per_s")
            ratio = f"{fps / headless:.2f}" if fps and headless else "–"
            name = (
                "model"
                if processor == "model"
                else f"sleeping stand-in ({results['model_ms_per_volume']:.0f} ms)"
            )
            print(
                f"| {name} | {condition} | {fps:.1f} | {ratio} | {volumes:.0f} | "
                f"{'–' if shown is None else f'{shown:.1f}'} | "
                f"{'–' if draws is None else f'{draws:.1f}'} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--planes", default="-8:8:2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        print(json.dumps(results))
    else:
        _print(results)


if __name__ == "__main__":
    main()
