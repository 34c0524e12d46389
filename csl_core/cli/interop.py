"""Commands between this tool and others: ``import``, ``export`` and ``app`` (the dashboard)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError
from ..run.layout import EXPORT
from ..run.store import RunError, RunStore
from .runs import print_info

EXPORT_FORMATS = ("csv", "imagefolder", "cleanlab", "fiftyone", "arrays")


def cmd_export(args) -> int:
    from ..run.export import export_run
    from ..run.interop import export_interop

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise InputError(f"unknown export format(s) {unknown or args.format!r}; known: {', '.join(EXPORT_FORMATS)}")
    cleaning = getattr(args, "cleaning", None)
    store = RunStore(args.run, read_only=cleaning is not None)
    out = (Path(args.out) if args.out else store.path / EXPORT).resolve()   # printed as absolute paths
    if cleaning is not None and set(formats) - {"csv", "imagefolder"}:
        raise InputError(f"--cleaning applies to the csv and imagefolder formats, not {', '.join(formats)}")
    if "csv" in formats or "imagefolder" in formats:
        result = export_run(store.path, include_dropped=not args.no_dropped, imagefolder="imagefolder" in formats,
                            out_dir=out if (args.out or cleaning is None) else None, cleaning=cleaning)
        print(f"wrote {result.rows} rows to {Path(result.csv_path).resolve()}")
        if result.tree_path is not None:
            print(f"wrote the cleaned ImageFolder tree {Path(result.tree_path).resolve()}")
    for file in export_interop(store.path, out, label_issue_table="cleanlab" in formats,
                               fiftyone="fiftyone" in formats, arrays="arrays" in formats):
        print(f"wrote {Path(file).resolve()}")
    return 0


def cmd_import(args) -> int:
    from ..run.interop import import_run

    arrays = {}
    for item in args.array:
        field, sep, file = item.partition("=")
        if not sep or not file:
            raise InputError(f"--array {item!r}: expected FIELD=FILE, e.g. correct=correct.npy")
        arrays[field.strip()] = file
    classes = None
    if args.classes:
        given = Path(args.classes)
        classes = (given.read_text().splitlines() if given.is_file()
                   else [c.strip() for c in args.classes.split(",")])
        classes = [c for c in classes if c]
    store = import_run(args.out, samples_file=args.samples, losses_file=args.losses,
                       probabilities_file=args.probabilities, images_file=args.images,
                       embeddings_file=args.embeddings, array_files=arrays, root=args.root, classes=classes,
                       model=args.model, layout=args.layout, from_dir=args.from_dir)
    print(f"run folder: {store.path}")
    print_info(store)
    return 0


def app_path() -> Path:
    """The dashboard's ``app.py``: beside ``csl_core`` in a checkout or an editable install, else the copy a
    wheel installs as package ``csl_clean_app``."""
    beside = Path(__file__).resolve().parents[2] / "app.py"
    if beside.is_file():
        return beside
    import importlib.util

    spec = importlib.util.find_spec("csl_clean_app")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(folder) / "app.py").is_file():
            return Path(folder) / "app.py"
    raise RunError("the dashboard (app.py) is not installed beside csl_core; reinstall with `pip install csl-clean`")


# Streamlit takes a `pages/` folder beside app.py for its old automatic multipage app until the process's
# first st.navigation call, so the very first page opened by its address after a start (a bookmark to
# /focused-review) says "Page not found". The server `csl-clean app` starts knows from the outset that the
# app navigates itself.
_SERVER = ("import sys; from streamlit.runtime.pages_manager import PagesManager; "
           "PagesManager.uses_pages_directory = False; from streamlit.web.cli import main; "
           "sys.argv[0] = 'streamlit'; main()")


def app_command(streamlit_args: list[str]) -> list[str]:
    """The ``streamlit run`` command line of ``csl-clean app``: local address and no usage statistics unless
    the arguments say otherwise."""
    defaults = {"--server.address": "127.0.0.1", "--browser.gatherUsageStats": "false"}
    given = {arg.split("=", 1)[0] for arg in streamlit_args}
    extra = [item for key, value in defaults.items() if key not in given for item in (key, value)]
    return [sys.executable, "-c", _SERVER, "run", str(app_path()), *extra, *streamlit_args]


def cmd_app(args) -> int:
    """Start the dashboard. On POSIX this process becomes the Streamlit server (``exec``), so that a signal
    sent to ``csl-clean app`` (Ctrl-C, a service manager's stop) reaches the server and leaves no orphan."""
    import subprocess

    env = dict(os.environ)
    if args.runs:
        env["CSL_RUNS_DIR"] = str(Path(args.runs).resolve())
    command = app_command([a for a in args.streamlit_args if a != "--"])
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, env)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
