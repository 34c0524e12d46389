"""Jobs the tests watch."""
from __future__ import annotations

import threading

from csl_core.engine.jobs import Job


class Watched(Job):
    """A job that says when its training has passed its second batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.second_batch = threading.Event()

    def on_batch(self, epoch, batch, batches):
        super().on_batch(epoch, batch, batches)
        if batch >= 2 or epoch > 0:
            self.second_batch.set()
