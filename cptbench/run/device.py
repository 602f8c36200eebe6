"""The one check of a ``--device`` value, shared by ``run``/``sweep`` (the runner's preflight) and
``bench``: a bad name, a missing CUDA or MPS backend or a CUDA index past the machine's devices
becomes one :class:`~cptbench.core.errors.UsageError` naming the fix, before any model is loaded."""

from __future__ import annotations

from typing import Any

from cptbench.core.errors import UsageError


def check_device(device: Any) -> None:
    """Raise :class:`UsageError` unless ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a
    ``torch.device``) can be used on this machine."""
    device = str(device)
    if device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {device}: not a torch device ({exc}); use cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}, "
                             f"built {'with' if torch.version.cuda else 'without'} CUDA); use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"--device {device}: MPS is not available on this machine; use --device cpu.")
