"""Open a large run in the dashboard and time every page: script-run seconds and the process's peak RSS.

Each page listed in ``app.py`` is run with Streamlit's AppTest, in this one process, as the server
would run it: the first run of a page (which may fill caches, e.g. scoring 1.28M samples once for
the whole dashboard) and then ``--reruns`` more (what a person waits for on every click); the
median of those is the page's time. With ``--each-first`` every page is instead the first page of a
fresh process, the longest a person can wait. Targets (issue 6): every script run under 3 s, first
loads included, and the process under 2 GiB RSS at its peak.

    python scripts/make_synthetic_run.py /tmp/csl-large/synthetic-imagenet
    python -m scripts.bench_large_run /tmp/csl-large/synthetic-imagenet
    python -m scripts.bench_large_run /tmp/csl-large/synthetic-imagenet --each-first

Keep large runs out of ``runs/``: the dashboard opens the newest run there by default.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGET_SECONDS = 3.0
TARGET_RSS_GIB = 2.0


def rss_gib() -> tuple[float, float]:
    """(current, peak) resident set size of this process, in GiB."""
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def app_pages() -> list[tuple[str, str]]:
    """``(file, title)`` of each page, in the order ``app.py`` lists them."""
    text = (ROOT / "app.py").read_text()
    return re.findall(r'st\.Page\("(pages/[\w/]+\.py)",\s*title="([^"]+)"', text)


def each_first(run: Path, args) -> int:
    """Every page (or each ``--page``) as the first page of a fresh process of this script."""
    import subprocess
    import tempfile

    titles = args.page or [title for _, title in app_pages()]
    results, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        for k, title in enumerate(titles):
            out = Path(tmp) / f"{k}.json"
            done = subprocess.run([sys.executable, "-m", "scripts.bench_large_run", str(run), "--page", title,
                                   "--reruns", str(args.reruns), "--json", str(out)], capture_output=True, text=True,
                                   cwd=ROOT)
            failed |= done.returncode != 0
            if not out.is_file():
                print(f"{title}: failed\n{done.stderr[-2000:]}")
                continue
            page = json.loads(out.read_text())["pages"][0]
            results.append(page)
            rerun = f"{page['rerun_seconds']:6.2f}s" if page["rerun_seconds"] is not None else "   -   "
            print(f"{title:<14} first {page['first_seconds']:7.2f}s  rerun {rerun}  peak rss "
                  f"{page['peak_rss_gib']:.2f} GiB   (a fresh process)", flush=True)
    if results:
        slowest = max(r["first_seconds"] for r in results)
        print(f"slowest    {slowest:.2f}s a first load ({'meets' if slowest < TARGET_SECONDS else 'misses'} the "
              f"target < {TARGET_SECONDS:.0f}s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(run), "each_first": True, "pages": results}, indent=2))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="run folder to open (e.g. made by scripts/make_synthetic_run.py)")
    parser.add_argument("--reruns", type=int, default=3, help="timed reruns of each page after its first run")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--page", action="append", default=None, metavar="TITLE",
                        help="time only this page (repeatable, in the order given): e.g. --page Evaluate in a fresh "
                             "process shows the wait of a person whose first click opens that page")
    parser.add_argument("--each-first", action="store_true",
                        help="open every page as the first of its own fresh process (what a person waits for "
                             "whose first click, or bookmark, is that page), instead of all in one process")
    args = parser.parse_args(argv)
    run = Path(args.run).resolve()
    if not (run / "meta.json").is_file():
        raise SystemExit(f"{run} is not a run folder; make one with scripts/make_synthetic_run.py")
    if args.each_first:
        return each_first(run, args)
    os.environ["CSL_RUNS_DIR"] = str(run.parent)

    from streamlit.testing.v1 import AppTest

    from csl_core.run.store import RunStore

    store = RunStore(run)
    print(f"run        {run}: {store.num_samples:,} samples x {store.finished_epochs} epochs, "
          f"{len(store.classes)} classes, probabilities {'yes' if store.probabilities() is not None else 'no'}")
    baseline = rss_gib()[0]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
    at.session_state["run_path"] = str(run)
    pages = app_pages()
    if args.page:
        by_title = {title.lower(): (file, title) for file, title in pages}
        unknown = [t for t in args.page if t.lower() not in by_title]
        if unknown:
            raise SystemExit(f"no page titled {', '.join(unknown)}; the pages are {', '.join(t for _, t in pages)}")
        pages = [by_title[t.lower()] for t in args.page]
    results = []
    for file, title in pages:
        at.switch_page(file)
        times = []
        for attempt in range(1 + args.reruns):
            began = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - began)
        problems = [str(e.value) for e in at.exception] + [str(e.value) for e in at.error]
        current, peak = rss_gib()
        page = {"page": title, "file": file, "first_seconds": times[0],
                "rerun_seconds": statistics.median(times[1:]) if args.reruns else None,
                "rss_gib": current, "peak_rss_gib": peak, "problems": problems}
        results.append(page)
        rerun = f"{page['rerun_seconds']:6.2f}s" if args.reruns else "   -   "
        print(f"{title:<14} first {times[0]:7.2f}s  rerun {rerun}  rss {current:.2f} GiB (peak {peak:.2f})"
              + (f"  PROBLEMS: {problems}" if problems else ""), flush=True)
    peak = rss_gib()[1]
    slowest = max((r["rerun_seconds"] or r["first_seconds"]) for r in results)
    print(f"baseline   {baseline:.2f} GiB before the first page (Python and Streamlit)")
    print(f"slowest    {slowest:.2f}s a rerun ({'meets' if slowest < TARGET_SECONDS else 'misses'} the target "
          f"< {TARGET_SECONDS:.0f}s)")
    print(f"peak RSS   {peak:.2f} GiB ({'meets' if peak < TARGET_RSS_GIB else 'misses'} the target "
          f"< {TARGET_RSS_GIB:.0f} GiB)")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(run), "samples": store.num_samples,
                                               "epochs": store.finished_epochs, "baseline_rss_gib": baseline,
                                               "peak_rss_gib": peak, "pages": results}, indent=2))
    return 0 if not any(r["problems"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
