"""What a live session reports: its state, running figures, summary and failures.

`LiveState` is where a session is; `LiveStats` a snapshot while it runs (rates and
latencies over the last frames, so they show how the system keeps up *now*);
`LiveSummary` the whole run once it has ended. `LiveCounters` gathers the figures
from the session's three threads under one short-held lock (a leaf lock: nothing
else is acquired while it is held), and `RunFailures` keeps what went wrong, in
order, so that the summary reports the first cause.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from deepz_live.acquisition._dose import equivalent_zstack_dose
from deepz_live.acquisition._run_summaries import measured_fps, significant

if TYPE_CHECKING:
    from pathlib import Path

    from deepz_live.acquisition._live_policy import Policy

__all__ = [
    "LiveCounters",
    "LiveState",
    "LiveStats",
    "LiveSummary",
    "RunFailures",
    "saved_message",
]

_RATE_WINDOW = 64
_LATENCY_WINDOW = 200


class LiveState(str, Enum):
    """Where a `LiveSession` is; compares equal to (and prints as) its value.

    ``idle`` (created) → ``starting`` (processor set-up) → ``acquiring`` →
    ``catching_up`` (camera done, worker still refocusing) → one of ``finished``,
    ``stopped`` or ``failed``.
    """

    IDLE = "idle"
    STARTING = "starting"
    ACQUIRING = "acquiring"
    CATCHING_UP = "catching_up"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:  # the value, as enum.StrEnum (Python ≥ 3.11) does
        return str(self.value)


@dataclass(frozen=True)
class LiveStats:
    """A snapshot of a running (or finished) session; `LiveSession.stats`.

    Rates and latencies are over the last 64 frames / 200 volumes, so they show how
    the system keeps up *now*; `LiveSummary` has the whole-run figures.

    Attributes
    ----------
    state : LiveState
        ``idle``, ``starting`` (processor set-up), ``acquiring``, ``catching_up``
        (camera done, worker still refocusing), ``finished``, ``stopped`` or
        ``failed``.
    elapsed_s : float
        Seconds since `LiveSession.start`.
    frames_acquired, frames_expected : int
        Raw frames written so far, and planned.
    volumes : int
        Volumes made so far.
    skipped : int
        Frames that will not be refocused: replaced by a newer frame before the
        worker took them (``latest``), or dropped from the backlog by ``stop()``.
    queue_depth : int
        Frames waiting to be refocused (in memory and on disk).
    frames_in_memory : int
        Of those, frames held in memory (at most ``max_frames_in_memory``).
    frames_read_back : int
        Frames the worker read back from the raw file (``all``).
    frames_per_s, volumes_per_s : float or None
        Recent acquisition and refocusing rates.
    latency_p50_ms, latency_p99_ms : float or None
        Recent latency from a frame's arrival (``frameReady``) to its volume being
        ready (written and handed on).
    dose_per_frame_J_cm2, dose_total_J_cm2 : float or None
        Light dose per frame (mean) and so far, as the camera reports it (None when
        it does not: a real microscope).
    equivalent_zstack_dose_J_cm2 : float or None
        What the frames so far would have cost as scanned z-stacks (by default of
        the volumes' planes: one exposure per plane instead of one per frame).
    frame_events_dropped : int
        ``frame_acquired`` notifications dropped for a slow listener.
    """

    state: LiveState
    elapsed_s: float
    frames_acquired: int
    frames_expected: int
    volumes: int
    skipped: int
    queue_depth: int
    frames_in_memory: int
    frames_read_back: int
    frames_per_s: float | None
    volumes_per_s: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    dose_per_frame_J_cm2: float | None
    dose_total_J_cm2: float | None
    equivalent_zstack_dose_J_cm2: float | None
    frame_events_dropped: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {**self.__dict__, "state": str(self.state)}


@dataclass(frozen=True)
class LiveSummary:
    """What a live session produced (`LiveSession.wait`, ``run_finished``).

    Attributes
    ----------
    frames : int
        Raw frames written.
    fps : float or None
        Frame rate from the frames' camera timestamps.
    volumes : int
        Volumes made (and written, when a volume file was asked for).
    skipped : int
        Frames not refocused (``frames - volumes``).
    volumes_per_s : float or None
        End-to-end rate: volumes / (last volume ready − first frame arrived).
    latency_p50_ms, latency_p99_ms : float or None
        Frame arrival to volume ready, over the whole run.
    raw_output : Path
        The raw time-lapse (``TYX``).
    volume_output : Path or None
        The volume file (``TZYX``), when asked for.
    policy : str
        ``latest`` or ``all``.
    planes_um : tuple of float
        Planes of every volume.
    processor : dict
        The processor's `FrameProcessor.describe` (model identity).
    dose_per_frame_J_cm2, dose_total_J_cm2, equivalent_zstack_dose_J_cm2 : float or None
        As in `acquisition.TimelapseSummary`.
    zstack_planes : int
        Plane count of the comparison z-stack (by default the volumes' plane count).
    frames_read_back : int
        Frames the worker read back from the raw file.
    peak_frames_in_memory : int
        Most frames held in memory for the worker at once.
    canceled : bool
        Stopped (`LiveSession.stop`, Ctrl-C) before all frames were taken or refocused.
    error : str or None
        What went wrong, for a failed run.
    """

    frames: int
    fps: float | None
    volumes: int
    skipped: int
    volumes_per_s: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    raw_output: Path
    volume_output: Path | None
    policy: Policy
    planes_um: tuple[float, ...]
    processor: dict[str, Any]
    dose_per_frame_J_cm2: float | None
    dose_total_J_cm2: float | None
    equivalent_zstack_dose_J_cm2: float | None
    zstack_planes: int
    frames_read_back: int = 0
    peak_frames_in_memory: int = 0
    canceled: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed by ``deepz acquire --model ... --json``.

        The keys of ``acquire``'s summary (``output`` is the raw file) plus the
        refocusing figures.
        """
        return {
            "frames": self.frames,
            "fps": significant(self.fps, 4),
            "output": str(self.raw_output),
            "dose_per_frame_J_cm2": significant(self.dose_per_frame_J_cm2),
            "dose_total_J_cm2": significant(self.dose_total_J_cm2),
            "equivalent_zstack_dose_J_cm2": significant(
                self.equivalent_zstack_dose_J_cm2
            ),
            "volumes": self.volumes,
            "skipped": self.skipped,
            "volumes_per_s": significant(self.volumes_per_s, 4),
            "latency_p50_ms": significant(self.latency_p50_ms, 4),
            "latency_p99_ms": significant(self.latency_p99_ms, 4),
            "raw_output": str(self.raw_output),
            "volume_output": (
                None if self.volume_output is None else str(self.volume_output)
            ),
            "policy": self.policy,
            "planes_um": list(self.planes_um),
            "processor": self.processor,
            "canceled": self.canceled,
        }


class LiveCounters:
    """A session's running figures, written by its threads, read by anyone.

    Every method holds the lock only to update or copy a few numbers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._t_start = 0.0
        self._t_end = 0.0
        self._frames = 0
        self._volumes = 0
        self._skipped = 0
        self._read_back = 0
        self._frame_arrivals: deque[float] = deque(maxlen=_RATE_WINDOW)
        self._volume_readies: deque[float] = deque(maxlen=_RATE_WINDOW)
        self._recent_latency: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._latencies: list[float] = []
        self._first_arrival: float | None = None
        self._last_ready: float | None = None
        self._times: list[Any] = []
        self._dose_total = 0.0
        self._dose_known = True

    # -- updates -----------------------------------------------------------------
    def start_clock(self) -> None:
        """The run starts now (`LiveStats.elapsed_s` counts from here)."""
        with self._lock:
            self._t_start = time.perf_counter()

    def stop_clock(self) -> None:
        """The run has ended."""
        with self._lock:
            self._t_end = time.perf_counter()

    def frame_arrived(self, arrived: float, record: dict[str, Any]) -> None:
        """A raw frame was written (its arrival time and metadata record)."""
        dose = record.get("dose_J_cm2")
        with self._lock:
            self._frames += 1
            self._frame_arrivals.append(arrived)
            if self._first_arrival is None:
                self._first_arrival = arrived
            self._times.append(record.get("time_s"))
            if isinstance(dose, (int, float)) and not isinstance(dose, bool):
                self._dose_total += float(dose)
            else:
                self._dose_known = False

    def frame_skipped(self) -> None:
        """A waiting frame was replaced by a newer one (``latest``)."""
        with self._lock:
            self._skipped += 1

    def frame_read_back(self) -> None:
        """The worker read a frame back from the raw file (``all``)."""
        with self._lock:
            self._read_back += 1

    def volume_made(self, arrived: float, ready: float) -> None:
        """A volume is ready; its frame arrived at ``arrived``."""
        latency = ready - arrived
        with self._lock:
            self._volumes += 1
            self._volume_readies.append(ready)
            self._recent_latency.append(latency)
            self._latencies.append(latency)
            self._last_ready = ready

    def settle_skipped(self) -> None:
        """At the end: every frame without a volume counts as skipped."""
        with self._lock:
            self._skipped = self._frames - self._volumes

    # -- readings ----------------------------------------------------------------
    def recorded_dose(self) -> float | None:
        """Dose of the frames so far (0.0 before any), None if a frame had none."""
        with self._lock:
            return self._dose_total if self._dose_known else None

    def _dose_so_far(self) -> float | None:
        return self._dose_total if self._dose_known and self._frames else None

    def snapshot(
        self,
        *,
        state: LiveState,
        frames_expected: int,
        queue_depth: int,
        frames_in_memory: int,
        zstack_planes: int,
        frame_events_dropped: int,
    ) -> LiveStats:
        """A consistent `LiveStats` of these figures plus the given ones."""
        with self._lock:
            frames = self._frames
            latencies = sorted(self._recent_latency)
            dose_total = self._dose_so_far()
            dose_per_frame = None if dose_total is None else dose_total / frames
            return LiveStats(
                state=state,
                elapsed_s=(
                    (self._t_end or time.perf_counter()) - self._t_start
                    if self._t_start
                    else 0.0
                ),
                frames_acquired=frames,
                frames_expected=frames_expected,
                volumes=self._volumes,
                skipped=self._skipped,
                queue_depth=queue_depth,
                frames_in_memory=frames_in_memory,
                frames_read_back=self._read_back,
                frames_per_s=_rate(self._frame_arrivals),
                volumes_per_s=_rate(self._volume_readies),
                latency_p50_ms=_percentile_ms(latencies, 50),
                latency_p99_ms=_percentile_ms(latencies, 99),
                dose_per_frame_J_cm2=dose_per_frame,
                dose_total_J_cm2=dose_total,
                equivalent_zstack_dose_J_cm2=equivalent_zstack_dose(
                    dose_total, zstack_planes
                ),
                frame_events_dropped=frame_events_dropped,
            )

    def summary(
        self,
        *,
        raw_output: Path,
        volume_output: Path | None,
        policy: Policy,
        planes_um: tuple[float, ...],
        processor: dict[str, Any],
        zstack_planes: int,
        peak_frames_in_memory: int,
        canceled: bool,
    ) -> LiveSummary:
        """The whole-run `LiveSummary` (without ``error``; see `RunFailures`)."""
        with self._lock:
            frames, volumes = self._frames, self._volumes
            latencies = sorted(self._latencies)
            span = (
                None
                if self._first_arrival is None or self._last_ready is None
                else self._last_ready - self._first_arrival
            )
            dose_total = self._dose_so_far()
            times = list(self._times)
            read_back = self._read_back
        return LiveSummary(
            frames=frames,
            fps=measured_fps(times),
            volumes=volumes,
            skipped=frames - volumes,
            volumes_per_s=(volumes / span if span and volumes else None),
            latency_p50_ms=_percentile_ms(latencies, 50),
            latency_p99_ms=_percentile_ms(latencies, 99),
            raw_output=raw_output,
            volume_output=volume_output,
            policy=policy,
            planes_um=planes_um,
            processor=processor,
            dose_per_frame_J_cm2=None if dose_total is None else dose_total / frames,
            dose_total_J_cm2=dose_total,
            equivalent_zstack_dose_J_cm2=equivalent_zstack_dose(
                dose_total, zstack_planes
            ),
            zstack_planes=zstack_planes,
            frames_read_back=read_back,
            peak_frames_in_memory=peak_frames_in_memory,
            canceled=canceled,
        )


class _Failure(NamedTuple):
    where: str  # "acquisition", "raw", "frame", "processor", "volumes", "setup"
    message: str
    error: BaseException | None


class RunFailures:
    """What went wrong during a run, in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []

    def add(self, where: str, message: str, error: BaseException | None) -> None:
        """Record a failure; ``where`` is the stage (``setup``, ``raw``...)."""
        with self._lock:
            self._failures.append(_Failure(where, message, error))

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._failures)

    def report(self, summary: LiveSummary) -> LiveSummary:
        """``summary`` with the first failure and what is saved where as its error."""
        with self._lock:
            first = self._failures[0] if self._failures else None
        if first is None:
            return summary
        if first.where == "setup":
            return replace(summary, error=f"{first.message}.")
        return replace(summary, error=f"{first.message}; {saved_message(summary)}.")


def saved_message(summary: LiveSummary) -> str:
    """What a run left on disk, for an error message."""
    if summary.frames == 0:
        return "no frames were saved"
    text = (
        f"the {summary.frames} frame{'s' if summary.frames != 1 else ''} acquired are "
        f"saved in {summary.raw_output}"
    )
    if summary.volume_output is not None:
        text += f", {summary.volumes} volumes in {summary.volume_output}"
    elif summary.volumes:
        text += f" ({summary.volumes} refocused)"
    if summary.skipped and summary.policy == "all":
        text += (
            f"; {summary.skipped} frames were not refocused (deepz refocus MODEL "
            f"{summary.raw_output} does it offline)"
        )
    return text


def _rate(stamps: deque[float]) -> float | None:
    if len(stamps) < 2:
        return None
    span = stamps[-1] - stamps[0]
    return (len(stamps) - 1) / span if span > 0 else None


def _percentile_ms(sorted_seconds: list[float], q: float) -> float | None:
    if not sorted_seconds:
        return None
    return float(np.percentile(sorted_seconds, q)) * 1000.0
