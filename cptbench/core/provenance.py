"""Provenance attached to every run record: package versions, git revision, platform."""

from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_PACKAGES = ("cptbench", "torch", "transformers", "numpy", "pycocotools", "pillow")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Python's and the key packages' versions (``absent`` for one not installed)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


@lru_cache(maxsize=1)
def git_revision() -> str:
    """The cptbench checkout's commit (with ``-dirty`` if modified), or ``unknown`` for a wheel."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def platform_info() -> dict[str, str]:
    """The OS platform, machine type and Python executable."""
    return {"platform": platform.platform(), "machine": platform.machine(), "executable": sys.executable}
