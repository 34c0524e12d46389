"""Screenshots of the dashboard for the docs, at 1280 x 800: Galleries, the focused review, the class
pairs and the trajectories page of a run.

Serves ``app.py`` on a free localhost port with the run's parent folder as the runs folder, opens it
in headless Chromium (Debian's ``chromium``; nothing is downloaded) and saves four PNG files.

    python -m csl_core train --data demo --out /tmp/shots/runs/demo
    python scripts/screenshots.py /tmp/shots/runs/demo --out docs/images
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
        if server.poll() is not None:
            break
    raise SystemExit("streamlit did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a finished run folder")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--gallery-class", default="8", help="class shown in the gallery (its menu label's start)")
    args = parser.parse_args(argv)
    run = Path(args.run).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "CSL_RUNS_DIR": str(run.parent)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
            page.goto(url)
            try:
                # The router's own menu (not Streamlit's automatic one for pages/, shown for a moment
                # on a fresh server's first load) is there once the sidebar's run picker is.
                page.get_by_text("Open run").wait_for(timeout=60_000)
                page.get_by_role("link", name="Galleries", exact=True).click()
                page.get_by_text("Hardest: highest CSL").wait_for(timeout=60_000)
            except Exception:
                page.screenshot(path=str(out / "failed.png"))
                raise
            page.locator("[data-testid='stSelectbox']").filter(has_text="Class").first.click()
            page.get_by_role("option", name=f"{args.gallery_class}:", exact=False).first.click()
            page.locator("[data-testid='grid-card']").nth(23).wait_for(timeout=60_000)
            page.mouse.move(1, 1)    # no hover preview in the picture
            time.sleep(2)
            page.screenshot(path=str(out / "gallery.png"), full_page=False)
            page.get_by_role("link", name="Focused review", exact=True).click()
            page.locator("[data-testid='focus-view'] .neighbours img").first.wait_for(timeout=60_000)
            time.sleep(2)
            page.screenshot(path=str(out / "focus.png"), full_page=False)
            page.get_by_role("link", name="Class pairs", exact=True).click()
            page.locator("[data-testid='grid-card']").first.wait_for(timeout=60_000)
            time.sleep(2)
            page.screenshot(path=str(out / "pairs.png"), full_page=True)
            page.get_by_role("link", name="Trajectories", exact=True).click()
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            time.sleep(3)
            page.screenshot(path=str(out / "trajectories.png"), full_page=False)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"wrote gallery.png, focus.png, pairs.png and trajectories.png to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
