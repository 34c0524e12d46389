"""The trainer raises glibc's malloc thresholds on CPU so freed activations are reused, not unmapped."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Allocates, touches and frees 16 MiB through malloc; prints the resident memory it left behind.
PROBE = textwrap.dedent("""
    import ctypes, sys
    sys.path.insert(0, {root!r})
    from csl_core.engine.allocator import keep_freed_memory
    applied = keep_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    page = 4096
    def resident():
        return int(open("/proc/self/statm").read().split()[1]) * page
    before = resident()
    size = 16 * 2**20
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    print(applied, resident() - before)
""")


def probe(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "CSL_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["CSL_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT))], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/statm"),
                    reason="glibc and /proc only")
def test_freed_memory_stays_mapped_for_the_next_step_unless_turned_off():
    applied, kept = probe(None)
    assert applied
    assert kept >= 15 * 2**20  # freed, yet still resident: the next step re-uses it without page faults

    applied, kept = probe("0")
    assert not applied
    assert kept < 4 * 2**20  # glibc's default: a 16 MiB block is its own mapping, unmapped on free


def test_is_applied_once_and_remembered(monkeypatch):
    from csl_core.engine import allocator

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv("CSL_KEEP_FREED_MEMORY", "off")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setenv("CSL_KEEP_FREED_MEMORY", "1")
    assert allocator.keep_freed_memory() is False  # decided once per process
