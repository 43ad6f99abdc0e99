"""The refocus queue between the acquisition thread and the worker, and its policies.

The acquisition thread puts every written frame here without waiting; the worker
takes the next one to refocus. Both policies keep memory bounded:

* ``"latest"`` (live preview): one slot. A new frame replaces a frame the worker has
  not taken yet (`RefocusQueue.put` says so, and the session counts it as skipped).
  The worker always refocuses the newest frame, so latency stays within about two
  processing times however fast the camera is.
* ``"all"``: first in, first out; every frame is refocused eventually. At most
  ``max_frames_in_memory`` frames are held in memory; the tickets of the others carry
  only their index, and the worker reads those frames back from the raw file (each
  page is on disk before the acquisition callback returns).

`Policy` is the one list of policies: the session, the CLI and the panel's settings
all take it from here.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from deepz_live.acquisition._errors import AcquisitionError

__all__ = [
    "POLICIES",
    "POLICY_DESCRIPTIONS",
    "FrameTicket",
    "Policy",
    "RefocusQueue",
    "check_policy",
]

Policy = Literal["latest", "all"]
"""How a live session chooses frames to refocus: ``latest`` skips, ``all`` does all."""
POLICIES: tuple[Policy, ...] = get_args(Policy)
"""The policies, in the order to offer them: ``("latest", "all")``."""
POLICY_DESCRIPTIONS: dict[Policy, str] = {
    "latest": "live preview: refocus the newest frame, skip (and count) the others",
    "all": "refocus every frame, catching up from the raw file after the camera",
}
"""What each policy does, for help texts and the panel's tooltips."""

_POLL_S = 0.1


def check_policy(policy: object) -> Policy:
    """``policy`` if it is one of `POLICIES`, else an `AcquisitionError`."""
    if policy not in POLICIES:
        raise AcquisitionError(
            f"policy must be 'latest' (live preview, skips frames) or 'all' "
            f"(refocus every frame), got {policy!r}."
        )
    return policy


@dataclass
class FrameTicket:
    """A frame waiting for the worker; ``frame`` is None when it waits on disk."""

    index: int
    arrived: float
    frame: np.ndarray | None
    record: dict[str, Any] = field(repr=False)


class RefocusQueue:
    """Bounded hand-off of frames to the worker, by `Policy`; thread-safe.

    Parameters
    ----------
    policy : Policy
        ``latest`` (one slot, newest wins) or ``all`` (FIFO, spills to disk).
    max_frames_in_memory : int
        ``all``: tickets beyond this many in memory drop their frame, to be read
        back from the raw file.

    Raises
    ------
    AcquisitionError
        An unknown policy, or ``max_frames_in_memory`` not a whole number ≥ 1.
    """

    def __init__(self, policy: Policy, max_frames_in_memory: int) -> None:
        self.policy = check_policy(policy)
        if (
            isinstance(max_frames_in_memory, bool)
            or not isinstance(max_frames_in_memory, (int, np.integer))
            or max_frames_in_memory < 1
        ):
            raise AcquisitionError(
                f"max_frames_in_memory must be a whole number ≥ 1, got "
                f"{max_frames_in_memory!r}."
            )
        self.max_frames_in_memory = int(max_frames_in_memory)
        self._cond = threading.Condition()
        self._slot: FrameTicket | None = None  # latest
        self._backlog: deque[FrameTicket] = deque()  # all
        self._in_memory = 0  # frames held by backlog tickets
        self._peak_in_memory = 0
        self._acquisition_done = False
        self._abandoned = False

    # -- acquisition side --------------------------------------------------------
    def put(self, ticket: FrameTicket) -> bool:
        """Queue a frame without waiting; True if it replaced one never taken."""
        replaced = False
        with self._cond:
            if self.policy == "latest":
                replaced = self._slot is not None
                self._slot = ticket
                self._peak_in_memory = max(self._peak_in_memory, 1)
            else:
                if self._in_memory < self.max_frames_in_memory:
                    self._in_memory += 1
                    self._peak_in_memory = max(self._peak_in_memory, self._in_memory)
                else:
                    ticket.frame = None  # read back from the raw file in its turn
                self._backlog.append(ticket)
            self._cond.notify_all()
        return replaced

    def finish_acquiring(self) -> None:
        """No more frames will come: `take` returns None once the queue is empty."""
        with self._cond:
            self._acquisition_done = True
            self._cond.notify_all()

    # -- worker side -------------------------------------------------------------
    def take(self) -> FrameTicket | None:
        """The next frame to refocus (waits for one), or None when none is left."""
        with self._cond:
            while True:
                if self._abandoned:
                    return None
                if self._slot is not None:
                    ticket, self._slot = self._slot, None
                    return ticket
                if self._backlog:
                    ticket = self._backlog.popleft()
                    if ticket.frame is not None:
                        self._in_memory -= 1
                    return ticket
                if self._acquisition_done:
                    return None
                self._cond.wait(_POLL_S)

    # -- any thread --------------------------------------------------------------
    def abandon(self) -> None:
        """Take nothing more: `take` returns None from now on (stop, or an error)."""
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()

    @property
    def abandoned(self) -> bool:
        """Whether `abandon` was called."""
        return self._abandoned

    def clear(self) -> None:
        """Forget every frame still waiting (the run has ended)."""
        with self._cond:
            self._backlog.clear()
            self._slot = None
            self._in_memory = 0

    def depth(self) -> tuple[int, int]:
        """``(frames waiting, of which held in memory)``."""
        with self._cond:
            waiting = self._slot is not None
            return len(self._backlog) + waiting, self._in_memory + waiting

    @property
    def peak_in_memory(self) -> int:
        """Most frames held in memory at once."""
        with self._cond:
            return self._peak_in_memory
