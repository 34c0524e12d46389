"""Noise kinds: exact counts, seeded, where flipped labels go, and the class maps they use."""
from __future__ import annotations

import numpy as np
import pytest

from csl_core.data import build_training_set, confusable_map, inject_label_noise, pairflip_map, parse_class_map

LABELS = np.repeat(np.arange(10), 137)  # 1,370 samples, 10 classes


@pytest.mark.parametrize("kind", ["symmetric", "pairflip", "confusable"])
def test_every_kind_flips_exactly_floor_p_n_labels_seeded(kind):
    class_map = confusable_map(np.eye(10)[::-1] * 5 + 1) if kind == "confusable" else None
    noisy, flipped = inject_label_noise(LABELS, 0.083, 10, seed=4, kind=kind, class_map=class_map)
    assert len(flipped) == int(np.floor(0.083 * len(LABELS))) == 113
    assert np.array_equal(np.flatnonzero(noisy != LABELS), flipped)  # every chosen label changed, no other
    again, flipped_again = inject_label_noise(LABELS, 0.083, 10, seed=4, kind=kind, class_map=class_map)
    assert np.array_equal(again, noisy) and np.array_equal(flipped_again, flipped)
    other, _ = inject_label_noise(LABELS, 0.083, 10, seed=5, kind=kind, class_map=class_map)
    assert not np.array_equal(other, noisy)


def test_pairflip_sends_each_class_to_the_next():
    assert pairflip_map(4).tolist() == [1, 2, 3, 0]
    noisy, flipped = inject_label_noise(LABELS, 0.2, 10, seed=1, kind="pairflip")
    assert np.array_equal(noisy[flipped], (LABELS[flipped] + 1) % 10)


def test_symmetric_kind_is_unchanged_by_the_new_kinds():
    """The default kind ignores a class map (it is the other kinds' input) and spreads flips uniformly: the
    flipped samples over the classes, and each class's flips over the nine other classes."""
    class_map = pairflip_map(10)
    noisy, flipped = inject_label_noise(LABELS, 0.3, 10, seed=3)
    mapped, mapped_flipped = inject_label_noise(LABELS, 0.3, 10, seed=3, kind="symmetric", class_map=class_map)
    assert np.array_equal(mapped, noisy) and np.array_equal(mapped_flipped, flipped)
    assert not np.array_equal(noisy[flipped], (LABELS[flipped] + 1) % 10)   # not a pair flip
    per_class = np.bincount(LABELS[flipped], minlength=10)
    assert per_class.min() > 0.5 * len(flipped) / 10 and per_class.max() < 1.5 * len(flipped) / 10
    offsets = np.bincount((noisy[flipped] - LABELS[flipped]) % 10, minlength=10)
    assert offsets[0] == 0 and offsets[1:].min() > 0.5 * len(flipped) / 9


def test_confusable_map_picks_the_most_confused_other_class():
    confusion = np.array([[50, 3, 9],    # class 0 is mistaken for 2 most
                          [7, 40, 7],    # a tie: the lower index wins
                          [0, 0, 60]])   # never confused: the next class
    assert confusable_map(confusion).tolist() == [2, 0, 0]
    with pytest.raises(ValueError, match="square"):
        confusable_map(np.ones((2, 3)))


def test_a_partial_map_flips_only_the_named_classes():
    class_map = parse_class_map("shirt:t-shirt,t-shirt:shirt", ["t-shirt", "trouser", "shirt"])
    assert class_map.tolist() == [2, -1, 0]
    labels = np.repeat(np.arange(3), 100)
    noisy, flipped = inject_label_noise(labels, 0.3, 3, seed=0, kind="confusable", class_map=class_map)
    assert len(flipped) == 90 and not (labels[flipped] == 1).any()
    assert np.array_equal(noisy[flipped], class_map[labels[flipped]])
    with pytest.raises(ValueError, match="only 200 samples are eligible"):
        inject_label_noise(labels, 0.7, 3, seed=0, kind="confusable", class_map=class_map)


def test_bad_maps_say_what_is_wrong():
    with pytest.raises(ValueError, match="needs a class map"):
        inject_label_noise(LABELS, 0.1, 10, seed=0, kind="confusable")
    with pytest.raises(ValueError, match="to itself"):
        inject_label_noise(LABELS, 0.1, 10, seed=0, kind="pairflip", class_map=np.arange(10))
    with pytest.raises(ValueError, match="unknown class 'dress'"):
        parse_class_map("shirt:dress", ["shirt", "coat"])
    with pytest.raises(ValueError, match="unknown noise kind"):
        inject_label_noise(LABELS, 0.1, 10, seed=0, kind="asymmetric")


def test_training_set_carries_pairflip_truth():
    ts = build_training_set("demo", inject_noise=0.1, inject_duplicates_pairs=0, seed=2, noise_kind="pairflip")
    wrong = ts.samples[ts.samples["is_mislabeled"]]
    assert len(wrong) == int(np.floor(0.1 * len(ts)))
    assert ((wrong["true_label"] + 1) % 10 == wrong["label"]).all()


def test_confusable_run_learns_its_map_and_keeps_it(tmp_path):
    """Without a map the trainer learns one from a warm-up, stores it, and the injected labels follow it."""
    from csl_core.config import TrainConfig
    from csl_core.engine.train import prepare_run

    config = TrainConfig(data="demo", epochs=1, inject_noise=0.1, inject_duplicates=0, noise_kind="confusable")
    store, ts, config = prepare_run(config, tmp_path / "run")
    class_map = np.asarray(store.meta["config"]["noise_map"])
    assert class_map.shape == (10,) and (class_map != np.arange(10)).all()
    wrong = ts.samples[ts.samples["is_mislabeled"]]
    assert np.array_equal(wrong["label"].to_numpy(), class_map[wrong["true_label"].to_numpy()])
    again = build_training_set("demo", inject_noise=0.1, inject_duplicates_pairs=0, seed=0,
                               noise_kind="confusable", noise_map=class_map)
    assert np.array_equal(again.labels, ts.labels)  # a resume rebuilds the same labels from meta.json


def test_the_benchmark_injects_the_noise_kind_it_is_given(tmp_path):
    from csl_core.bench import BenchConfig, Benchmark, Setting

    config = BenchConfig(data="demo", noise=(0.1,), duplicates=0, seeds=(1,), epochs=1, noise_kind="pairflip")
    ts = Benchmark(config, tmp_path / "bench", quiet=True)._training_set(1, Setting("noise", 0.1))
    wrong = ts.samples[ts.samples["is_mislabeled"]]
    assert len(wrong) == int(np.floor(0.1 * len(ts)))
    assert ((wrong["true_label"] + 1) % 10 == wrong["label"]).all()
    with pytest.raises(ValueError, match="unknown noise kind"):
        BenchConfig(noise_kind="sideways").validate()


def test_a_text_map_is_parsed_against_the_class_names_and_stored(tmp_path):
    from csl_core.config import TrainConfig
    from csl_core.engine.train import prepare_run

    config = TrainConfig(data="demo", epochs=1, inject_noise=0.05, inject_duplicates=0, noise_kind="confusable",
                         noise_map="3:8,8:3")
    store, ts, _ = prepare_run(config, tmp_path / "run")
    assert store.meta["config"]["noise_map"] == [-1, -1, -1, 8, -1, -1, -1, -1, 3, -1]
    wrong = ts.samples[ts.samples["is_mislabeled"]]
    assert len(wrong) == int(np.floor(0.05 * len(ts))) and set(wrong["true_label"]) <= {3, 8}
