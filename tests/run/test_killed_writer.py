"""A writer killed (SIGKILL) in the middle of writing a run's array leaves its temporary file; the next process
that takes the run's lock removes it, and the run reads as before the write began."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np

from csl_core.run.store import RunStore
from tests.support import HANG_SECONDS, ROOT

# The real writer (RunStore.extend_epochs -> allocate_array -> atomic_file), held still once its temporary
# file exists and holds the array's header, so that the kill lands mid-write every time.
WRITER = """
import sys, time
import numpy as np
from csl_core.run.store import RunStore

open_memmap = np.lib.format.open_memmap
def held(file, mode="r+", *args, **kwargs):
    array = open_memmap(file, mode, *args, **kwargs)
    if mode == "w+":            # the new array, not a read of the old one
        print(file, flush=True)
        time.sleep(600)
    return array
np.lib.format.open_memmap = held

store = RunStore(sys.argv[1])
with store.lock():
    store.extend_epochs(store.meta["epochs"] + 3)
"""


def test_a_writer_killed_mid_write_leaves_a_temporary_file_the_next_lock_holder_removes(tmp_path, make_run):
    store = make_run(tmp_path / "run", n=40, epochs=2)
    loss_before = np.load(store.path / "arrays" / "loss.npy")
    meta_before = json.loads((store.path / "meta.json").read_text())
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store.path)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        temporary = writer.stdout.readline().strip()     # the writer is inside atomic_file now
        assert temporary, writer.communicate(timeout=HANG_SECONDS)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=HANG_SECONDS)
    assert os.path.dirname(temporary) == str(store.path / "arrays") and os.path.isfile(temporary)
    assert os.path.basename(temporary).startswith(".")          # arrays/.<field>.npy.<random>.tmp

    reopened = RunStore(store.path)
    with reopened.lock():                                       # the next writer (a resume) takes the run
        assert not os.path.exists(temporary)
    assert sorted(os.listdir(store.path / "arrays")) == sorted(f"{f}.npy" for f in meta_before["fields"])
    assert json.loads((store.path / "meta.json").read_text()) == meta_before
    assert RunStore(store.path).meta["epochs"] == 2
    np.testing.assert_array_equal(np.load(store.path / "arrays" / "loss.npy"), loss_before)
