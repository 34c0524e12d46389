"""A score knows its parameters: they are declared with it, the only ones its computation reads, and part of
the cache key of kept scores; its short name and description are fields, and docs/api.md's score table says
what the registry holds."""
from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pytest

from csl_core.analysis import scores as scores_module
from csl_core.analysis.neighbours import EXACT_MAX_SAMPLES
from csl_core.analysis.scores import COLUMNS, SCORES, compute_scores, score_set_version
from tests.support import ROOT

ENTRIES = {**SCORES, **COLUMNS}


def test_adding_a_parameter_to_a_score_changes_the_cache_key_and_nothing_else(monkeypatch):
    before = score_set_version()
    knn = SCORES["knn_disagreement"]
    monkeypatch.setitem(SCORES, "knn_disagreement", dataclasses.replace(knn, params={**knn.params, "metric": "l2"}))
    assert score_set_version() != before
    monkeypatch.setitem(SCORES, "knn_disagreement", knn)
    assert score_set_version() == before


@pytest.mark.parametrize("name, change", [("knn_disagreement", {"neighbours": 5}),
                                          ("fused", {"components": ("csl", "knn_disagreement")}),
                                          ("suggested_label", {"vote_weight": 0.25})])
def test_a_changed_parameter_changes_the_key_and_the_values(monkeypatch, name, change):
    rng = np.random.default_rng(0)
    n, classes = 200, 4
    labels = rng.integers(0, classes, n)
    inputs = {"arrays": {"loss": rng.random((n, 3)), "margin": rng.normal(size=(n, 3))},
              "probabilities": rng.dirichlet(np.ones(classes), n), "labels": labels,
              "embeddings": rng.normal(size=(n, 8)) + labels[:, None]}
    before_key, before = score_set_version(), compute_scores(**inputs)
    table = SCORES if name in SCORES else COLUMNS
    score = table[name]
    monkeypatch.setitem(table, name, dataclasses.replace(score, params={**score.params, **change}))
    after = compute_scores(**inputs)
    assert score_set_version() != before_key
    assert not np.array_equal(before[name].to_numpy(), after[name].to_numpy())


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_a_score_computes_with_exactly_its_declared_parameters(name):
    """``compute(inputs, **params)``: a setting the computation reads is a declared parameter (keyword-only,
    no default of its own), so it is in the cache key."""
    parameters = list(inspect.signature(ENTRIES[name].compute).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return   # passes them on to a function checked here (the class evidence's)
    assert {p.name for p in parameters} == set(ENTRIES[name].params)
    assert all(p.default is p.empty for p in parameters)


def test_the_class_evidence_takes_its_parameters_from_the_declaration():
    evidence = inspect.signature(scores_module._evidence).parameters
    for name in ("suggested_label", "suggested_confidence", "label_evidence"):
        assert set(COLUMNS[name].params) == set(evidence) - {"x"}


def test_short_names_are_distinct_and_the_label_is_short_and_description():
    shorts = [score.short for score in SCORES.values()]
    assert len(set(shorts)) == len(shorts)
    for score in ENTRIES.values():
        assert " (" not in score.short or not score.description      # the description is never in the short name
        assert score.label == (f"{score.short} ({score.description})" if score.description else score.short)


def _api_score_rows() -> dict[str, str]:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("| column | meaning"):].split("\n\n")[0].splitlines()[2:]
    rows = {}
    for line in table:
        names, meaning = line.strip("|").split("|", 1)
        for name in re.findall(r"`([a-z_]+)`", names):
            assert name not in rows, f"{name} listed twice"
            rows[name] = meaning
    return rows


def test_the_score_table_of_the_api_docs_lists_the_registry_and_its_parameters():
    rows = _api_score_rows()
    assert set(rows) == set(ENTRIES)
    for name, entry in ENTRIES.items():
        for value in entry.params.values():
            words = [f"`{v}`" for v in value] if isinstance(value, tuple) else [f"{value:g}"]
            assert all(word in rows[name] for word in words), (name, value, rows[name])
    assert f"{EXACT_MAX_SAMPLES:,}" in rows["knn_disagreement"]
