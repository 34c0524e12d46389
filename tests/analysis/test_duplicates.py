from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from csl_core.analysis.duplicates import (
    content_hashes,
    duplicate_groups,
    duplicate_score,
    exact_duplicate_of,
    group_labels,
    injected_pair_recall,
    member_similarity,
    nearest_neighbours,
)
from csl_core.cli import main
from csl_core.data import load_imagefolder
from csl_core.run.duplicates import find_duplicates
from csl_core.run.layout import NEIGHBOURS


@pytest.fixture(scope="module")
def run_copy(copy_demo, tmp_path_factory):
    """The session's demo run, copied: the duplicate search writes its cache into the run folder."""
    return copy_demo(tmp_path_factory.mktemp("dups") / "demo")


def brute_force_neighbours(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


# ---------------------------------------------------------------- exact duplicates

def test_hashing_finds_resaved_and_losslessly_reencoded_copies(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    other = original.copy()
    other[0, 0, 0] ^= 1  # one bit off: a different image
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    Image.fromarray(original).save(tmp_path / "a" / "original.png")
    Image.open(tmp_path / "a" / "original.png").save(tmp_path / "b" / "resaved.png", optimize=True)
    Image.open(tmp_path / "a" / "original.png").save(tmp_path / "b" / "reencoded.bmp")
    Image.open(tmp_path / "a" / "original.png").save(tmp_path / "a" / "reencoded.tiff", compression="tiff_lzw")
    Image.fromarray(other).save(tmp_path / "a" / "other.png")

    source = load_imagefolder(str(tmp_path), image_size=16)
    hashes = content_hashes(source.images)
    by_name = {path.rsplit("/", 1)[-1]: h for path, h in zip(source.paths, hashes)}
    assert by_name["original.png"] == by_name["resaved.png"] == by_name["reencoded.bmp"] == by_name["reencoded.tiff"]
    assert by_name["other.png"] != by_name["original.png"]
    exact_of = exact_duplicate_of(hashes)
    copies = [i for i, path in enumerate(source.paths) if "other" not in path]
    assert len(set(exact_of[copies])) == 1 and exact_of[copies][0] == min(copies)
    assert sorted(np.unique(exact_of, return_counts=True)[1].tolist()) == [1, 4]


def test_hash_depends_on_shape_and_needs_uint8():
    flat = np.zeros((1, 4, 4, 1), dtype=np.uint8)
    assert content_hashes(flat)[0] != content_hashes(flat.reshape(1, 2, 8, 1))[0]
    with pytest.raises(ValueError, match="uint8"):
        content_hashes(flat.astype(np.float32))


# ---------------------------------------------------------------- neighbour search

@pytest.mark.parametrize("block_bytes", [4 * 200 * 7, 4 * 200 * 200, 1])
def test_chunked_search_equals_brute_force(block_bytes):
    embeddings = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    indices, sims = nearest_neighbours(embeddings, k=5, block_bytes=block_bytes)
    expected_indices, expected_sims = brute_force_neighbours(embeddings.astype(np.float64), 5)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-5)


def test_search_never_returns_the_sample_itself_and_handles_zero_rows():
    embeddings = np.zeros((6, 3), dtype=np.float32)
    embeddings[:3] = [1, 2, 3]  # three identical rows
    embeddings[3] = [3, 0, 1]
    indices, sims = nearest_neighbours(embeddings, k=3, block_bytes=4 * 6 * 2)
    assert (indices != np.arange(6)[:, None]).all()
    assert set(indices[0, :2]) == {1, 2}
    np.testing.assert_allclose(sims[0, :2], 1.0, atol=1e-6)
    np.testing.assert_allclose(sims[4:], 0.0 * sims[4:], atol=1e-6)  # all-zero rows are similar to nothing
    assert nearest_neighbours(embeddings[:2], k=10)[0].shape == (2, 1)


# ---------------------------------------------------------------- groups, conflicts, scores

def chain() -> tuple[np.ndarray, np.ndarray]:
    """Samples 0-1 at 0.97, 1-2 at 0.92, 3 and 4 alone (0.5 to anything)."""
    indices = np.array([[1, 2], [0, 2], [1, 0], [0, 4], [3, 0]])
    sims = np.array([[0.97, 0.9], [0.97, 0.92], [0.92, 0.9], [0.5, 0.5], [0.5, 0.4]], dtype=np.float32)
    return indices, sims


@pytest.mark.parametrize("threshold, expected", [
    (0.9, [0, 0, 0, -1, -1]),
    (0.95, [0, 0, -1, -1, -1]),
    (0.99, [-1, -1, -1, -1, -1]),
    (0.4, [0, 0, 0, 0, 0]),
])
def test_grouping_follows_the_threshold(threshold, expected):
    indices, sims = chain()
    assert group_labels(indices, sims, threshold=threshold).tolist() == expected


def test_exact_copies_are_grouped_whatever_the_threshold():
    indices, sims = chain()
    exact_of = np.array([0, 1, 2, 3, 3])
    assert group_labels(indices, sims, threshold=0.99, exact_of=exact_of).tolist() == [-1, -1, -1, 0, 0]
    assert group_labels(indices, sims, threshold=0.95, exact_of=exact_of).tolist() == [0, 0, -1, 1, 1]


def test_groups_flag_label_conflicts_and_rank_by_highest_csl():
    indices, sims = chain()
    exact_of = np.array([0, 1, 2, 3, 3])
    groups = group_labels(indices, sims, threshold=0.95, exact_of=exact_of)
    labels = np.array([2, 2, 1, 0, 1])
    csl = np.array([1.0, 3.0, 100.0, 2.0, 9.0])
    similarity = member_similarity(groups, indices, sims, exact_of=exact_of)
    np.testing.assert_allclose(similarity, [0.97, 0.97, np.nan, 1.0, 1.0], rtol=1e-6)
    table = duplicate_groups(groups, labels, csl, similarity=similarity, exact_of=exact_of)
    assert table["group"].tolist() == [1, 0]  # highest CSL 9 before 3
    assert table["rank"].tolist() == [1, 2]
    assert table["members"].tolist() == [[4, 3], [1, 0]]  # members by CSL, highest first
    assert table["label_conflict"].tolist() == [True, False]
    assert table["exact"].tolist() == [True, False]
    assert table["labels"].tolist() == [[0, 1], [2]]
    assert table["max_csl"].tolist() == [9.0, 3.0]


def test_empty_group_table_has_the_columns():
    indices, sims = chain()
    groups = group_labels(indices, sims, threshold=0.999)
    table = duplicate_groups(groups, np.zeros(5, int), np.zeros(5), similarity=np.full(5, np.nan))
    some = duplicate_groups(group_labels(indices, sims, threshold=0.5), np.zeros(5, int), np.zeros(5),
                            similarity=np.full(5, 0.9))
    assert len(table) == 0 and len(some) > 0
    # the same columns as a table with groups, so a reader (CLI, page) never meets a missing one
    assert list(table.columns) == list(some.columns) and "label_conflict" in table.columns


def test_duplicate_score_is_the_closest_neighbour_with_another_label():
    indices, sims = chain()
    labels = np.array([2, 2, 1, 0, 0])
    score = duplicate_score(indices, sims, labels)
    np.testing.assert_allclose(score, [0.9, 0.92, 0.92, 0.5, 0.4], rtol=1e-6)
    assert (duplicate_score(indices, sims, np.zeros(5, int)) == 0.0).all()  # no neighbour disagrees
    exact = duplicate_score(indices, sims, np.array([2, 2, 1, 0, 1]), exact_of=np.array([0, 1, 2, 3, 3]))
    assert exact[3] == exact[4] == 1.0


def test_injected_pair_recall_counts_found_pairs_and_false_groups():
    groups = np.array([0, 0, 1, 1, -1, 2, 2, -1])
    duplicate_of = np.array([1, 0, -1, -1, 7, -1, -1, 4])
    table = pd.DataFrame({"group": [0, 1, 2], "label_conflict": [True, True, False]})
    found = injected_pair_recall(groups, duplicate_of, table)
    assert found == {"pairs": 2, "found": 1, "found_and_flagged": 1, "recall": 0.5, "groups": 3,
                     "false_groups": 2}


def test_inputs_are_validated():
    indices, sims = chain()
    with pytest.raises(ValueError, match="same shape"):
        group_labels(indices, sims[:, :1])
    with pytest.raises(ValueError, match="2-D"):
        nearest_neighbours(np.zeros(5), k=3)
    with pytest.raises(ValueError, match="labels"):
        duplicate_score(indices, sims, np.zeros(3))


# ---------------------------------------------------------------- a run folder and the CLI

def test_every_injected_pair_of_the_demo_is_a_conflicting_group(run_copy):
    report = find_duplicates(run_copy)
    samples = pd.read_csv(run_copy / "samples.csv")
    found = injected_pair_recall(report.samples["group"].to_numpy(), samples["duplicate_of"].to_numpy(),
                                 report.groups)
    assert found["pairs"] > 0 and found["recall"] == 1.0
    pairs = samples["duplicate_of"].to_numpy() >= 0
    assert (report.samples["duplicate_score"].to_numpy()[pairs] == 1.0).all()
    assert (run_copy / NEIGHBOURS).is_file()


def test_labels_and_csl_given_by_the_caller_are_used_instead_of_read(run_copy):
    from csl_core.run.store import RunStore

    scores = RunStore(run_copy).scores()
    labels, csl = scores["label"].to_numpy(), scores["csl"].to_numpy()
    read = find_duplicates(run_copy)
    given = find_duplicates(run_copy, labels=labels, csl=csl)
    pd.testing.assert_frame_equal(read.samples, given.samples)
    pd.testing.assert_frame_equal(read.groups, given.groups)
    # Different labels change which groups conflict: the given ones are what counts.
    uniform = find_duplicates(run_copy, labels=np.zeros_like(labels), csl=csl)
    assert read.groups["label_conflict"].any()
    assert not uniform.groups["label_conflict"].any()
    with pytest.raises(ValueError, match=f"csl has 3 values for the run's {len(labels)} samples"):
        find_duplicates(run_copy, csl=csl[:3])


def test_cli_duplicates_writes_csv_and_reuses_the_cache(run_copy, tmp_path, capsys):
    out = tmp_path / "groups.csv"
    assert main(["duplicates", str(run_copy), "--threshold", "0.15", "--csv", str(out)]) == 0
    cache_time = (run_copy / NEIGHBOURS).stat().st_mtime_ns
    printed = capsys.readouterr().out
    assert "with conflicting labels" in printed and "recall 1.0000" in printed
    assert "AUROC      duplicate_score" in printed
    table = pd.read_csv(out)
    assert {"rank", "group", "index", "sample_id", "label", "csl", "similarity", "label_conflict"} <= set(table.columns)
    injected = table[table["is_duplicate"]]
    assert injected["label_conflict"].all()
    assert main(["duplicates", str(run_copy), "--threshold", "0.05", "--top", "1"]) == 0
    assert (run_copy / NEIGHBOURS).stat().st_mtime_ns == cache_time


def test_cli_rejects_a_threshold_outside_the_ratio_range(run_copy, capsys):
    assert main(["duplicates", str(run_copy), "--threshold", "1.5"]) == 2
    assert "threshold" in capsys.readouterr().err


def test_without_embeddings_duplicates_are_still_found_from_the_pictures(run_copy, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run_copy, bare)
    (bare / "embeddings.npy").unlink()
    (bare / NEIGHBOURS).unlink(missing_ok=True)
    report = find_duplicates(bare)
    assert report.notes == []
    samples = pd.read_csv(bare / "samples.csv")
    found = injected_pair_recall(report.samples["group"].to_numpy(), samples["duplicate_of"].to_numpy(),
                                 report.groups)
    assert found["recall"] == 1.0


def test_embedding_neighbours_are_searched_only_when_asked_and_then_kept(run_copy, tmp_path):
    from csl_core.run.duplicates import cached_index
    from csl_core.run.store import RunStore

    fresh = tmp_path / "fresh"
    shutil.copytree(run_copy, fresh)
    (fresh / NEIGHBOURS).unlink(missing_ok=True)
    find_duplicates(fresh)  # the duplicate search does not wait for the embeddings' neighbours
    assert cached_index(RunStore(fresh)).embedding_indices.shape[1] == 0
    assert main(["duplicates", str(fresh), "--embedding-neighbours", "--top", "1"]) == 0
    index = cached_index(RunStore(fresh))
    assert index.embedding_indices.shape == (RunStore(fresh).num_samples, 10)
    assert index.indices.shape[1] == 10  # the thumbnails' neighbours stay
    embeddings = np.load(fresh / "embeddings.npy")
    expected, _ = nearest_neighbours(embeddings, k=10, backend="exact")
    assert (index.embedding_indices[:, 0] == expected[:, 0]).mean() > 0.99
