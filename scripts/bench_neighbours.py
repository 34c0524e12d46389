"""The neighbour search at ImageNet scale: kNN (k=30) over 1.28M x 512 float32, its recall against the
exact search on a 100k sample, and the duplicate search over 1.28M image fingerprints.

    nohup nice -n 5 python scripts/bench_neighbours.py --out bench-results/neighbours.json &

Embeddings: a mixture with class structure like a trained model's (1,000 classes; each sample its
class's random centre plus variation in a 32-dimensional subspace shared by all classes plus isotropic
noise, after a ReLU): the nearest neighbours of a sample are of its class (cosine ~0.94 for the first,
~0.91 for the 30th). Fingerprints: 8 x 8 thumbnails (64 floats) made from those of the CIFAR-10N
training images (each a real one plus noise, 0.1 per dimension after normalising), with 10,000 planted
near copies (noise 0.005: cosine ~0.999) whose recall is counted. ``aligned``: the product's duplicate
search (20 candidates by thumbnail, verified by the aligned 16 x 16 fine fingerprints, :func:`aligned_set`),
e.g. ``--stages aligned --samples 200000``. Each stage runs in a fresh process,
so its peak memory is its own; the results are written to ``--out`` after each stage, and a stage
already there is skipped.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import resource
import time
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mixture(samples: int, dim: int, *, classes: int = 1000, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    basis = rng.standard_normal((dim, 32), dtype=np.float32) * (0.35 / np.sqrt(32))
    out = np.empty((samples, dim), dtype=np.float32)
    for start in range(0, samples, 65536):
        stop = min(start + 65536, samples)
        labels = rng.integers(0, classes, stop - start)
        block = centres[labels] + rng.standard_normal((stop - start, 32), dtype=np.float32) @ basis.T
        block += 0.35 * 0.3 * rng.standard_normal(block.shape, dtype=np.float32)
        out[start:stop] = np.maximum(block, 0)
    return out


def _recall(samples: int, dim: int, k: int, queries: int, probes: int, queue) -> None:
    import numpy as np

    from csl_core.analysis.neighbours import exact_search, nearest_neighbours, normalise

    x = mixture(samples, dim)
    began, cpu = time.perf_counter(), time.process_time()
    indices, _ = nearest_neighbours(x, k=k, backend="faiss", probes=probes)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    rows = np.sort(np.random.default_rng(1).choice(samples, queries, replace=False))
    began = time.perf_counter()
    exact, sims = exact_search(normalise(x), rows, k, 64 * 2**20, False)
    exact_seconds = time.perf_counter() - began
    recall = float(np.mean([len(set(indices[r]) & set(exact[i])) / k for i, r in enumerate(rows)]))
    queue.put({"samples": samples, "dim": dim, "k": k, "probes": probes, "faiss_seconds": round(seconds, 1),
               "faiss_cpu_seconds": round(cpu, 1), "exact_queries": queries,
               "exact_seconds_for_queries": round(exact_seconds, 1),
               "exact_seconds_all_estimated": round(exact_seconds * samples / queries, 1),
               f"recall_at_{k}": round(recall, 4), "first_neighbour_cosine": round(float(sims[:, 0].mean()), 3),
               f"neighbour_{k}_cosine": round(float(sims[:, -1].mean()), 3), "peak_mib": round(_peak_mib(), 1)})


def _scale(samples: int, dim: int, k: int, probes: int, queue) -> None:
    from csl_core.analysis.neighbours import nearest_neighbours

    x = mixture(samples, dim)
    before = _peak_mib()
    began, cpu = time.perf_counter(), time.process_time()
    indices, _ = nearest_neighbours(x, k=k, backend="faiss", probes=probes, progress=True)
    queue.put({"samples": samples, "dim": dim, "k": k, "probes": probes,
               "seconds": round(time.perf_counter() - began, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
               "embeddings_mib": round(x.nbytes / 2**20, 1), "result_mib": round(indices.nbytes * 1.5 / 2**20, 1),
               "peak_mib": round(_peak_mib(), 1), "peak_before_search_mib": round(before, 1)})


def fingerprint_set(samples: int, planted: int, seed: int = 0):
    """``(thumbnails (N, 64) float32, pairs (planted, 2))`` built from the CIFAR-10N thumbnails as the
    docstring says."""
    import numpy as np

    from csl_core.analysis.hashing import thumbnails
    from csl_core.analysis.neighbours import normalise
    from csl_core.bench.duplicates import load_images

    rng = np.random.default_rng(seed)
    base = normalise(thumbnails(load_images("cifar10n", 25000)))
    out = np.empty((samples, base.shape[1]), dtype=np.float32)
    for start in range(0, samples, 65536):
        stop = min(start + 65536, samples)
        out[start:stop] = base[rng.integers(0, len(base), stop - start)]
        out[start:stop] += 0.1 * rng.standard_normal((stop - start, base.shape[1]), dtype=np.float32)
    out = normalise(out)
    a = rng.choice(samples, planted, replace=False)
    b = rng.choice(np.setdiff1d(np.arange(samples), a), planted, replace=False)
    out[b] = normalise(out[a] + 0.005 * rng.standard_normal((planted, out.shape[1]), dtype=np.float32))
    return out, np.stack([a, b], axis=1)


def _fingerprints(samples: int, probes: int, queue) -> None:
    import numpy as np

    from csl_core.analysis.duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD, near_duplicate_groups
    from csl_core.analysis.neighbours import nearest_neighbours

    prints, pairs = fingerprint_set(samples, 10000)
    began, cpu = time.perf_counter(), time.process_time()
    indices, sims = nearest_neighbours(prints, k=DEFAULT_NEIGHBOURS, probes=probes, progress=True)
    groups = near_duplicate_groups(indices, sims, threshold=DEFAULT_THRESHOLD)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    a, b = pairs[:, 0], pairs[:, 1]
    found = float(((groups[a] >= 0) & (groups[a] == groups[b])).mean())
    neighbour = float(np.mean([(indices[i] == j).any() or (indices[j] == i).any() for i, j in pairs]))
    queue.put({"fingerprints": samples, "dim": int(prints.shape[1]), "k": DEFAULT_NEIGHBOURS, "probes": probes,
               "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "planted_pairs": len(pairs),
               "planted_pairs_among_neighbours": round(neighbour, 4), "planted_pairs_grouped": round(found, 4),
               "peak_mib": round(_peak_mib(), 1)})


def aligned_set(samples: int, planted: int, seed: int = 0):
    """``(thumbnails (N, 64) float32, fine fingerprints (N, 16, 16) uint8, pairs (planted, 2))`` from the
    CIFAR-10N images: each sample a random real one, its thumbnail plus noise as in :func:`fingerprint_set`
    and its fine fingerprint plus noise (8 grey levels); a planted copy is its original plus a little
    (0.005 per thumbnail dimension, 1 grey level)."""
    import numpy as np

    from csl_core.analysis.hashing import fine_prints, thumbnails
    from csl_core.analysis.neighbours import normalise
    from csl_core.bench.duplicates import load_images

    rng = np.random.default_rng(seed)
    images = load_images("cifar10n", 25000)
    base, base_fine = normalise(thumbnails(images)), fine_prints(images).astype(np.float32)
    prints = np.empty((samples, base.shape[1]), dtype=np.float32)
    fine = np.empty((samples, *base_fine.shape[1:]), dtype=np.uint8)
    for start in range(0, samples, 65536):
        stop = min(start + 65536, samples)
        chosen = rng.integers(0, len(base), stop - start)
        prints[start:stop] = base[chosen] + 0.1 * rng.standard_normal((stop - start, base.shape[1]), dtype=np.float32)
        noisy = base_fine[chosen] + 8 * rng.standard_normal((stop - start, *base_fine.shape[1:]), dtype=np.float32)
        fine[start:stop] = np.clip(np.rint(noisy), 0, 255)
    prints = normalise(prints)
    a = rng.choice(samples, planted, replace=False)
    b = rng.choice(np.setdiff1d(np.arange(samples), a), planted, replace=False)
    prints[b] = normalise(prints[a] + 0.005 * rng.standard_normal((planted, prints.shape[1]), dtype=np.float32))
    noisy = fine[a].astype(np.float32) + rng.standard_normal((planted, *fine.shape[1:]), dtype=np.float32)
    fine[b] = np.clip(np.rint(noisy), 0, 255)
    return prints, fine, np.stack([a, b], axis=1)


def _aligned(samples: int, probes: int, queue) -> None:
    """The product's duplicate search: 20 candidates by thumbnail, verified by the aligned fine prints."""

    from csl_core.analysis.duplicates import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD, near_duplicate_groups
    from csl_core.analysis.hashing import ALIGNED_MAX_DISTANCE, CANDIDATES, verified_neighbours
    from csl_core.analysis.neighbours import nearest_neighbours

    prints, fine, pairs = aligned_set(samples, max(1, samples // 128))
    began, cpu = time.perf_counter(), time.process_time()
    candidates, _ = nearest_neighbours(prints, k=CANDIDATES, probes=probes, progress=True)
    search, search_cpu = time.perf_counter() - began, time.process_time() - cpu
    indices, sims = verified_neighbours(fine, candidates, keep=DEFAULT_NEIGHBOURS)
    groups = near_duplicate_groups(indices, sims, threshold=DEFAULT_THRESHOLD, max_distance=ALIGNED_MAX_DISTANCE)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    a, b = pairs[:, 0], pairs[:, 1]
    found = float(((groups[a] >= 0) & (groups[a] == groups[b])).mean())
    queue.put({"fingerprints": samples, "candidates": CANDIDATES, "kept": DEFAULT_NEIGHBOURS, "probes": probes,
               "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
               "candidate_search_seconds": round(search, 1), "candidate_search_cpu_seconds": round(search_cpu, 1),
               "planted_pairs": len(pairs), "planted_pairs_grouped": round(found, 4),
               "samples_grouped": int((groups >= 0).sum()), "peak_mib": round(_peak_mib(), 1)})


def _crops(samples: int, probes: int, queue) -> None:
    """The product's duplicate search with the crop tier (csl_core.analysis.crops.duplicate_search), stage by
    stage: the thumbnails' candidates, the centred thumbnails' candidates, the 16 x 16 verification of both,
    the crop tier's continuous alignment of each picture's best candidate. Crop fingerprints: the 25,000
    CIFAR-10N images' plus noise (8 grey levels), as the fine ones. The crop tier aligns the pairs that pass its
    gate (``crop_pairs_aligned``; at most one a sample: 0.7 a sample on Fashion-MNIST, fewer here)."""
    import numpy as np

    from csl_core.analysis import crops
    from csl_core.analysis.hashing import CANDIDATES, aligned_similarities
    from csl_core.analysis.neighbours import nearest_neighbours
    from csl_core.bench.duplicates import load_images

    prints, fine, pairs = aligned_set(samples, max(1, samples // 128))
    rng = np.random.default_rng(1)
    base = crops.crop_prints(load_images("cifar10n", 25000)).astype(np.float32)
    crop = np.empty((samples, *base.shape[1:]), dtype=np.uint8)
    for start in range(0, samples, 65536):
        stop = min(start + 65536, samples)
        noisy = base[rng.integers(0, len(base), stop - start)]
        noisy += 8 * rng.standard_normal(noisy.shape, dtype=np.float32)
        crop[start:stop] = np.clip(np.rint(noisy), 0, 255)
    times, began, cpu = {}, time.perf_counter(), time.process_time()

    def lap(name):
        times[f"{name}_seconds"] = round(time.perf_counter() - began - sum(v for k, v in times.items()
                                                                          if k.endswith("_seconds")), 1)

    found, _ = nearest_neighbours(prints, k=CANDIDATES, probes=probes, progress=True)
    lap("candidates")
    centred = crops.crop_candidates(crop)
    lap("centred_candidates")
    union = np.concatenate([found, centred], axis=1)
    sims = aligned_similarities(fine, union)
    lap("verification")
    first, second = crops.gated_pairs(union, sims)
    crops.crop_similarities(crop, first, second)
    lap("crop_tier")
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    queue.put({"fingerprints": samples, "crop_pairs_aligned": len(first), "seconds": round(seconds, 1),
               "cpu_seconds": round(cpu, 1), **times, "peak_mib": round(_peak_mib(), 1)})


def _in_child(target, *args, poll_seconds: float = 5.0) -> dict:
    """``target(*args, queue)`` in a fresh process; its result. A worker that dies without one (an error, the
    memory killer) ends the benchmark with its exit code instead of leaving this process waiting for good."""
    context = mp.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    while True:
        try:
            result = results.get(timeout=poll_seconds)
            break
        except queue.Empty:
            if not process.is_alive() and results.empty():
                process.join()
                raise SystemExit(f"{getattr(target, '__name__', target)} failed in its worker process (exit code "
                                 f"{process.exitcode}); its error is printed above")
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_280_000)
    parser.add_argument("--recall-samples", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000, help="rows searched exactly for the recall")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--probes", type=int, default=None, help="cells searched per sample (default: the library's)")
    parser.add_argument("--stages", default="recall,fingerprints,scale")
    parser.add_argument("--out", default="bench-results/neighbours.json")
    args = parser.parse_args()
    from csl_core.analysis.neighbours import DEFAULT_PROBES

    probes = args.probes or DEFAULT_PROBES
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(out.read_text()) if out.is_file() else {}
    stages = {"recall": (_recall, args.recall_samples, args.dim, args.k, args.queries, probes),
              "fingerprints": (_fingerprints, args.samples, probes),
              "aligned": (_aligned, args.samples, probes),
              "crops": (_crops, args.samples, probes),
              "scale": (_scale, args.samples, args.dim, args.k, probes)}
    for name in args.stages.split(","):
        if name in report:
            continue
        load = os.getloadavg()[0]
        report[name] = {**_in_child(*stages[name]), "load_average_at_start": round(load, 2),
                        "load_average_at_end": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}
        out.write_text(json.dumps(report, indent=2))
        print(name, json.dumps(report[name]), flush=True)


if __name__ == "__main__":
    main()
