"""The redraw throttle: only the newest value is drawn, at most ~30 times a second."""

from __future__ import annotations

import threading
import time

import numpy as np

from deepz_live.gui import LatestOnlyThrottle, VolumeView


def test_only_the_newest_of_many_offers_is_delivered(qtbot):
    throttle = LatestOnlyThrottle(rate_hz=30)
    throttle.stop()  # flushed by hand here
    drawn = []
    throttle.subscribe("volume", drawn.append)
    throttle.subscribe("frame", drawn.append)

    def worker():
        for i in range(50):
            throttle.offer("volume", i)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    throttle.offer("frame", "f")
    throttle.flush()
    assert drawn == [49, "f"]
    assert throttle.dropped("volume") == 49
    throttle.flush()  # nothing new: nothing drawn
    assert drawn == [49, "f"]


def test_a_volume_view_fed_faster_than_30_hz_draws_about_30_per_second(qtbot):
    view = VolumeView(use_gl=False)
    qtbot.addWidget(view)
    throttle = LatestOnlyThrottle(rate_hz=30)
    throttle.subscribe("volume", lambda item: view.set_volume(item[1], index=item[0]))
    stop = threading.Event()
    volumes = [np.full((3, 8, 8), i, np.float32) for i in range(10)]
    offered = []

    def producer():  # ~1000 volumes/s from a worker thread
        i = 0
        while not stop.is_set():
            throttle.offer("volume", (i, volumes[i % 10]))
            offered.append(i)
            i += 1
            time.sleep(0.001)

    thread = threading.Thread(target=producer)
    start = time.monotonic()
    thread.start()
    qtbot.wait(600)
    stop.set()
    thread.join()
    throttle.flush()
    elapsed = time.monotonic() - start
    assert len(offered) > 100
    # at most one draw per timer tick, plus the final flush
    assert view.volumes_drawn <= elapsed * 30 * 1.2 + 2
    assert view.volumes_drawn >= 3
    assert view.volume_index == offered[-1]  # the newest one is what is shown
