"""`--crop-limit 0` leaves the crop tier out of the search itself (2.3 times the CPU of the rest at 200,000
fingerprints), not only out of the groups; asking for crops later searches again with it."""
from __future__ import annotations

from csl_core.run.duplicates import find_duplicates, neighbour_index
from csl_core.run.store import RunStore


def test_a_crop_limit_of_0_skips_the_crop_tier_and_a_later_limit_searches_it(copy_demo, tmp_path, monkeypatch):
    from csl_core.analysis import crops

    run = copy_demo(tmp_path / "demo")
    (run / "neighbours.npz").unlink(missing_ok=True)
    aligned = []
    real = crops.crop_similarities
    monkeypatch.setattr(crops, "crop_similarities", lambda *a, **k: aligned.append(1) or real(*a, **k))
    off = find_duplicates(run, crop_limit=0.0)
    assert not aligned  # nothing aligned continuously
    index, _ = neighbour_index(RunStore(run), crops=False)
    assert index.crops_skipped and not index.crop_tier and len(index.crop_pairs) == 0
    assert not any("crop" in kinds for kinds in off.groups["kinds"])
    on = find_duplicates(run)  # the default limit: the saved search is searched again with the crop tier
    assert aligned
    index, _ = neighbour_index(RunStore(run))
    assert index.crop_tier and not index.crops_skipped and len(index.crop_pairs) > 0
    assert on.groups["size"].sum() >= off.groups["size"].sum()
    calls = len(aligned)
    find_duplicates(run, crop_limit=0.0)  # a saved search with the crop tier serves a limit of 0 as it is
    assert len(aligned) == calls
