"""scripts/gpu_check.py times and sync-checks the training step that ships (engine.step.train_step), not a copy
of it: a host synchronisation added to the real step must show up in the GPU check."""
from __future__ import annotations

import ast

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"


def test_the_gpu_check_drives_the_shipped_training_step():
    tree = ast.parse(SCRIPT.read_text())
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert ("csl_core.engine.step", "train_step") in imported and "train_step" in calls
    copied = {call for call in calls if call.endswith(("cross_entropy", ".backward", "optimizer.step", ".update"))
              and not call.startswith("self.tracker")}
    assert not copied, f"gpu_check computes a step of its own: {copied}"
