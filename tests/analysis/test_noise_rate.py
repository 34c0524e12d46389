"""The noise-rate estimate on cases with known noise, the memorised warning and the review budget."""
from __future__ import annotations

import numpy as np
import pytest

from csl_core.analysis.noise_rate import estimate_label_noise, memorised, noise_count, review_budget
from csl_core.analysis.trust import wrong_count


def _case(rate: float, seed: int = 0, n: int = 6000, classes: int = 10):
    """Probabilities of a decent model (it favours the true class) and labels with ``rate`` flipped."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, size=n)
    logits = rng.normal(size=(n, classes)) + 3.0 * np.eye(classes)[truth]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = truth.copy()
    flipped = rng.choice(n, size=int(rate * n), replace=False)
    labels[flipped] = (truth[flipped] + rng.integers(1, classes, size=len(flipped))) % classes
    return labels, probabilities, labels != truth


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_estimate_recovers_a_known_noise_rate(rate):
    labels, probabilities, wrong = _case(rate)
    estimate = estimate_label_noise(labels, probabilities)
    assert abs(estimate.rate - rate) < 0.025
    assert estimate.flagged.sum() > 0 and wrong[estimate.flagged].mean() > 0.7  # flagged are mostly wrong
    assert np.isclose(estimate.joint.sum(), len(labels))


def test_estimate_agrees_with_cleanlab():
    from cleanlab.count import num_label_issues

    labels, probabilities, _ = _case(0.1, seed=3)
    ours = estimate_label_noise(labels, probabilities).count
    theirs = num_label_issues(labels, probabilities, estimation_method="off_diagonal_calibrated")
    assert abs(ours - theirs) <= 2


def test_clean_labels_estimate_little_noise():
    labels, probabilities, _ = _case(0.0)
    assert estimate_label_noise(labels, probabilities).rate < 0.02


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one row per label"):
        estimate_label_noise(np.zeros(3, dtype=int), np.ones((4, 2)) / 2)


def test_memorised_and_review_budget():
    assert memorised(0.97, 0.09) and not memorised(0.80, 0.09) and not memorised(0.95, 0.0)
    assert memorised(1.0, 0.0)  # a memorised run estimates little noise: accuracy alone says it
    rng = np.random.default_rng(1)
    p = rng.beta(0.3, 3.0, 2000)
    estimate = wrong_count(p)
    budget = review_budget(estimate, p)
    top = np.sort(p)[::-1][: budget["k"]]
    assert budget["k"] == estimate.count == round(p.sum())
    assert budget["expected_wrong_in_top_k"] == pytest.approx(top.sum())


def test_run_page_and_info_say_where_the_run_stands(demo_run, tmp_path, monkeypatch, capsys, copy_demo, open_app):
    """The Run page and `info` show the training accuracy, the estimate and the budget it implies."""


    from csl_core.cli import main
    from csl_core.run.store import RunStore

    root = tmp_path / "runs"
    copy_demo(root / "demo")
    monkeypatch.setenv("CSL_RUNS_DIR", str(root))
    at = open_app()
    at.sidebar.selectbox(key="run_path").set_value(str(root / "demo")).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    accuracy = RunStore(root / "demo").report()["epochs"][-1]["accuracy"]
    assert metrics["Training accuracy"] == f"{accuracy:.3f}"
    scores = RunStore(root / "demo").scores()
    count = noise_count(scores)
    assert metrics["Likely mislabeled"] == f"~{count.count:,}"
    assert any("known ground truth" in m.value for m in at.markdown)
    assert main(["info", str(root / "demo")]) == 0
    printed = capsys.readouterr().out
    assert f"train acc  {accuracy:.4f}" in printed
    # one count, one line, the same on the page and in `info`
    line = next(row for row in printed.splitlines() if row.startswith("wrong "))
    assert count.text() in line and len(line) < 160
    assert any(count.text()[1:] in m.value for m in at.markdown)
