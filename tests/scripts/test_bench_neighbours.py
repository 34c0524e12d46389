"""scripts/bench_neighbours.py: a stage whose worker process fails ends the benchmark with a message, instead of
the parent waiting for its result for good (14 minutes until killed, as a new user met it)."""
from __future__ import annotations

import os
import time

import pytest

from scripts.bench_neighbours import _in_child


def test_a_worker_that_dies_without_a_result_ends_the_benchmark():
    began = time.monotonic()
    with pytest.raises(SystemExit, match="failed in its worker process .exit code 1"):
        _in_child(os.abort, poll_seconds=0.5)     # os.abort(queue): a TypeError in the worker, no result
    assert time.monotonic() - began < 120
