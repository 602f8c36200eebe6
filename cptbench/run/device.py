"""The run's device policy, resolved once by the harness for every method alike.

* :func:`check_device`: the one check of a ``--device`` value, shared by ``run``/``sweep`` (the
  engine's preflight) and ``bench``: a bad name, a missing CUDA or MPS backend or a CUDA index past
  the machine's devices becomes one :class:`~cptbench.core.errors.UsageError` naming the fix,
  before any model is loaded.
* :func:`method_precision`: the precision a method runs under on a device, from its ``precision``
  option (``auto`` unless set; ``--precision`` sets it for every method that has one):
  ``bf16`` autocast on CUDA, ``fp32`` elsewhere; a method without a model gets ``fp32``. The
  numerics themselves (autocast, TF32, auto batch size, out-of-memory halving) live in
  :mod:`cptbench.methods.numerics`, used by CPT and the fine-tuning baselines alike.
"""

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


def method_precision(method_cls: type, config: Any, device: Any) -> str:
    """The resolved precision (``fp32`` or ``bf16``) of a method with this config on ``device``."""
    from cptbench.methods.numerics import resolve_precision

    if not getattr(method_cls, "needs_model", False):
        return "fp32"
    return resolve_precision(getattr(config, "precision", "auto"), device)
