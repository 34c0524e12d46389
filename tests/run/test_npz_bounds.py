"""#29 (6): a small compressed ``neighbours.npz`` whose arrays would unpack into gigabytes (or whose shapes do
not fit the run) is refused from its headers, before an array is read: the search is made again."""
from __future__ import annotations

import tracemalloc

import numpy as np

from csl_core.analysis.duplicates import DEFAULT_NEIGHBOURS
from csl_core.run.duplicates import CACHE_VERSION, cached_index


def test_a_neighbour_file_that_would_unpack_into_gigabytes_is_refused_unread(tmp_path, make_run):
    store = make_run(tmp_path / "run", n=6)
    k = DEFAULT_NEIGHBOURS
    arrays = dict(version=CACHE_VERSION, k=k, embeddings_stamp=np.array([-1, -1]), seconds=0.0, aligned=True,
                  crop_tier=False, crop_pairs=np.empty((0, 2), np.int64), crop_similarities=np.empty(0, np.float32),
                  hashes=np.empty(0, "S16"), similarities=np.zeros((6, k), np.float32),
                  embedding_indices=np.empty((6, 0), np.int64), embedding_similarities=np.empty((6, 0), np.float32),
                  indices=np.zeros((6, 4_000_000), np.int64))        # 192 MB of zeros, a few hundred kB compressed
    np.savez_compressed(tmp_path / "bomb", **arrays)
    (tmp_path / "bomb.npz").rename(store.path / "neighbours.npz")
    assert (store.path / "neighbours.npz").stat().st_size < 2 << 20
    del arrays
    tracemalloc.start()
    try:
        assert cached_index(store, k=k) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20
