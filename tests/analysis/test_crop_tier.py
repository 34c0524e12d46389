"""The crop tier of the duplicate search: a planted crop (2-10% cut, resized back) is found, a different
picture of the same class is not grouped, and the settings (crop limit, which copy to keep) are respected."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from csl_core.analysis.crops import CROP_MAX_DISTANCE, crop_prints, crop_similarities, duplicate_search
from csl_core.analysis.duplicate_choice import group_kinds, keep_member
from csl_core.analysis.duplicates import content_hashes, crop_links, exact_duplicate_of, near_duplicate_groups
from csl_core.analysis.hashing import ALIGNED_MAX_DISTANCE, DEFAULT_RATIO, fine_prints, thumbnails
from csl_core.bench.duplicates import CIFAR10N_ENV, KINDS, false_grouping, known_duplicates
from csl_core.data.builtin import DEBIAN_FASHION_MNIST

CIFAR10N_TRAIN = Path(os.environ.get(CIFAR10N_ENV) or "/work/data/cifar10n/train")
needs_fashion = pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                                   reason="Debian's Fashion-MNIST files are not installed")
needs_cifar = pytest.mark.skipif(not CIFAR10N_TRAIN.is_dir(), reason="the CIFAR-10N JPEGs are not unpacked")


def fashion(count: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from csl_core.data.builtin import load_fashion_mnist

    train, _ = load_fashion_mnist()
    return np.asarray(train.images[start:start + count]), np.asarray(train.labels[start:start + count])


def groups_of(images: np.ndarray, crop_limit: float = CROP_MAX_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """The product's groups (ratio test, exact copies and the crop tier), and those without the crop tier."""
    indices, sims, pairs, crop_sims = duplicate_search(thumbnails(images), fine_prints(images), crop_prints(images))
    exact_of = exact_duplicate_of(content_hashes(images))
    crops = crop_links(pairs, crop_sims, max_distance=crop_limit)
    common = dict(threshold=DEFAULT_RATIO, exact_of=exact_of, max_distance=ALIGNED_MAX_DISTANCE)
    return near_duplicate_groups(indices, sims, crop_pairs=crops, **common), near_duplicate_groups(indices, sims,
                                                                                                    **common)


def with_crops(images: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    originals = rng.choice(len(images), count, replace=False)
    copies = np.stack([KINDS["crop"](images[i], rng) for i in originals])
    pairs = pd.DataFrame({"original": originals, "copy": len(images) + np.arange(count), "kind": "crop"})
    return np.concatenate([images, copies]), pairs


def together(groups: np.ndarray, pairs: pd.DataFrame) -> np.ndarray:
    a, b = groups[pairs["original"]], groups[pairs["copy"]]
    return (a >= 0) & (a == b)


@needs_cifar
def test_a_planted_crop_is_found_and_shown_as_a_possible_crop():
    files = sorted(CIFAR10N_TRAIN.glob("*.jpg"))[:400]
    images, pairs = with_crops(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]), 12, seed=1)
    groups, without = groups_of(images)
    assert together(groups, pairs).mean() >= 0.9  # the 16 x 16 grid of alignments alone: 0.14 (bench table)
    assert together(without, pairs).mean() <= 0.5  # ...so the crop tier is what finds them
    assert not false_grouping(groups, pairs).any()
    # a crop found only by the crop tier is a "possible crop", apart from the sure duplicates
    indices, sims, crop_pairs, crop_sims = duplicate_search(thumbnails(images), fine_prints(images),
                                                            crop_prints(images))
    kinds = group_kinds(groups, without, exact_duplicate_of(content_hashes(images)),
                        crop_links(crop_pairs, crop_sims, max_distance=CROP_MAX_DISTANCE))
    found = [g for g, w in zip(groups[pairs["copy"]], without[pairs["copy"]]) if g >= 0 and w < 0]
    assert found and all(kinds[int(g)] == ("crop",) for g in found)


@needs_fashion
def test_crops_of_fashion_mnist_are_found_among_look_alikes():
    images, _ = fashion(2000)
    images, pairs = with_crops(images, 30, seed=2)
    groups, without = groups_of(images)
    assert together(groups, pairs).mean() >= 0.9  # crops on plain black, 0.5-3 px of 28 cut: 30 of 30
    assert together(without, pairs).mean() <= 0.2
    # what the crop tier adds to the false grouping (the set's own near-duplicates left out, as in the
    # benchmark table): 2 of these 2,030 samples (the sure tiers alone: 9)
    known = known_duplicates(images)
    added = false_grouping(groups, pairs, known) & ~false_grouping(without, pairs, known)
    assert added.sum() <= 0.002 * len(images)


@needs_fashion
def test_a_different_picture_of_the_same_class_is_not_grouped():
    images, labels = fashion(3000)
    trousers = images[labels == 1][:250]  # a crowd of one cut, the hardest case for a looser alignment
    groups, without = groups_of(trousers)
    assert (groups >= 0).sum() <= (without >= 0).sum() + 2  # the crop tier adds at most one pair
    # the continuous alignment does not make two different trousers one picture
    first, second = np.arange(0, 100), np.arange(100, 200)
    distance = 1 - crop_similarities(crop_prints(trousers), first, second)
    assert (distance > CROP_MAX_DISTANCE).all()
    # ...while a crop of each of them is within the limit
    rng = np.random.default_rng(3)
    cropped = np.stack([KINDS["crop"](t, rng) for t in trousers[:20]])
    both = crop_prints(np.concatenate([trousers[:20], cropped]))
    assert np.mean(1 - crop_similarities(both, np.arange(20), np.arange(20, 40)) <= CROP_MAX_DISTANCE) >= 0.8


def test_the_crop_limit_is_respected():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 24, 24), dtype=np.uint8)
    images = np.asarray([np.asarray(Image.fromarray(i).resize((24, 24))) for i in images])
    indices, sims, pairs, crop_sims = duplicate_search(thumbnails(images), fine_prints(images), crop_prints(images))
    assert pairs.shape[1] == 2 and len(pairs) == len(crop_sims)
    assert len(crop_links(pairs, crop_sims, max_distance=0)) == 0  # 0: the crop tier is off
    everything = crop_links(pairs, crop_sims, max_distance=1.0)
    assert len(everything) == len(pairs)
    strict = crop_links(pairs, crop_sims, max_distance=0.01)
    assert ((1 - crop_sims[np.isin(pairs[:, 0] * 100 + pairs[:, 1], strict[:, 0] * 100 + strict[:, 1])]) <= 0.01).all()


def test_a_crop_pair_is_linked_only_when_far_closer_than_either_pictures_next_pair():
    from csl_core.analysis.crops import crop_ratios

    pairs = np.array([[0, 1], [0, 2], [3, 4], [3, 5], [6, 7]])
    distance = np.array([0.001, 0.01, 0.003, 0.004, 0.002])  # 0-1 a crop; 3-4 and 3-5 look-alikes; 6-7 alone
    ratios = crop_ratios(pairs, 1 - distance)
    assert np.allclose(ratios, [0.1, 1.0, 0.75, 1.0, 0.0])
    linked = crop_links(pairs, 1 - distance, max_distance=0.005, max_ratio=0.2)
    assert linked.tolist() == [[0, 1], [6, 7]]
    loose = crop_links(pairs, 1 - distance, max_distance=0.005, max_ratio=np.inf)
    assert loose.tolist() == pairs[[0, 2, 3, 4]].tolist()


def test_group_kinds_name_exact_near_and_possible_crop():
    # 0, 1 exact copies; 2, 3 near (ratio test); 4, 5 joined by the crop tier only; 6 with 2 by a crop link
    groups = np.array([0, 0, 1, 1, 2, 2, 1, -1])
    without = np.array([0, 0, 1, 1, -1, -1, -1, -1])
    exact_of = np.array([0, 0, 2, 3, 4, 5, 6, 7])
    kinds = group_kinds(groups, without, exact_of, np.array([[4, 5], [2, 6]]))
    assert kinds == {0: ("exact",), 1: ("near", "crop"), 2: ("crop",)}


def test_which_copy_is_kept_follows_the_policy():
    csl = np.array([0.5, 0.2, 0.9, np.nan])
    pixels = np.array([100, 400, 400, np.nan])
    sizes = np.array([5000, 1000, 9000, np.nan])
    members = [0, 1, 2, 3]
    assert keep_member(members, "lowest-score", csl=csl) == 1
    assert keep_member(members, "highest-resolution", csl=csl, pixels=pixels) == 1  # a tie: the lower CSL
    assert keep_member(members, "largest-file", csl=csl, file_bytes=sizes) == 2
    assert keep_member(members, "first", csl=csl) == 0
    assert keep_member([3, 2], "largest-file", csl=csl, file_bytes=sizes) == 2  # unknown size ranks last
    with pytest.raises(ValueError, match="keep policy"):
        keep_member(members, "newest", csl=csl)


def test_a_run_groups_by_the_crop_limit_it_is_given_and_names_each_groups_kinds(demo_run):
    from csl_core.run.duplicates import FINGERPRINTS, find_duplicates

    with np.load(demo_run / FINGERPRINTS) as data:
        assert data["crop"].shape[1:] == (32, 32) and data["crop"].dtype == np.uint8  # written with the run
    off = find_duplicates(demo_run, crop_limit=0.0)
    loose = find_duplicates(demo_run, crop_limit=0.05)  # far looser than the default: digits of one hand
    assert off.crop_limit == 0.0 and loose.crop_limit == 0.05
    assert not any("crop" in kinds for kinds in off.groups["kinds"])
    assert (off.groups["exact"] == (off.groups["kinds"] == "exact")).all()  # the demo's injected exact copies
    assert any("crop" in kinds for kinds in loose.groups["kinds"])
    assert loose.groups["size"].sum() > off.groups["size"].sum()
    with pytest.raises(ValueError, match="crop limit"):
        find_duplicates(demo_run, crop_limit=0.5)
