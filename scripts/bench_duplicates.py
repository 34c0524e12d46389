"""Time and memory of the duplicate search at scale (default: 60k samples, as Fashion-MNIST's train set).

    python scripts/bench_duplicates.py [--samples 60000] [--dim 128] [--k 10] [--images fashion-mnist]

Each stage runs in a fresh process, so its peak memory is its own: the neighbour search on synthetic
non-negative embeddings (like the models' ReLU features), grouping at the default threshold, and the
content hash of real decoded images. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _search(samples: int, dim: int, k: int, queue) -> None:
    import numpy as np

    from csl_core.analysis.duplicates import DEFAULT_BLOCK_BYTES, DEFAULT_THRESHOLD, group_labels, nearest_neighbours

    rng = np.random.default_rng(0)
    embeddings = np.maximum(rng.standard_normal((samples, dim), dtype=np.float32), 0)
    before = _rss_mib()
    began, cpu = time.perf_counter(), time.process_time()
    indices, sims = nearest_neighbours(embeddings, k=k)
    search, search_cpu = time.perf_counter() - began, time.process_time() - cpu
    peak = _peak_mib()
    began = time.perf_counter()
    groups = group_labels(indices, sims, threshold=DEFAULT_THRESHOLD)
    grouping = time.perf_counter() - began
    queue.put({"samples": samples, "dim": dim, "k": k, "search_seconds": round(search, 2),
               "search_cpu_seconds": round(search_cpu, 2),
               "grouping_seconds": round(grouping, 3), "rss_before_mib": round(before, 1),
               "peak_mib": round(peak, 1), "peak_above_inputs_mib": round(peak - before, 1),
               "embeddings_mib": round(embeddings.nbytes / 2**20, 1),
               "block_mib": DEFAULT_BLOCK_BYTES / 2**20, "groups": int(groups.max() + 1)})


def _hash(spec: str, queue) -> None:
    from csl_core.analysis.duplicates import content_hashes, exact_duplicate_of
    from csl_core.data import load_source

    source, _ = load_source(spec)
    before = _rss_mib()
    began = time.perf_counter()
    hashes = content_hashes(source.images)
    seconds = time.perf_counter() - began
    exact_of = exact_duplicate_of(hashes)
    copies = int((exact_of != range(len(exact_of))).sum())
    queue.put({"images": len(source), "image_shape": list(source.images.shape[1:]),
               "hash_seconds": round(seconds, 2), "peak_above_inputs_mib": round(_peak_mib() - before, 1),
               "exact_copies": copies})


def _in_child(target, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--images", default="fashion-mnist", help="data source whose images are hashed")
    args = parser.parse_args()
    import torch

    report = {"threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
              "search": _in_child(_search, args.samples, args.dim, args.k),
              "hash": _in_child(_hash, args.images)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
