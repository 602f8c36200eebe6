"""One device policy for every method that runs a model: precision, batch size, out-of-memory.

The harness resolves a run's policy (:mod:`cptbench.run.device`) and hands it to the method in its
:class:`~cptbench.methods.base.MethodContext`; CPT and the fine-tuning baselines both apply it with
the helpers here, so the paper's comparison runs under one set of numerics:

* **Precision.** ``auto`` is bf16 autocast on CUDA (weights, optimizer state and gradients stay
  fp32: fp32 master weights; TF32 matmuls allowed) and fp32 elsewhere; ``fp32`` reproduces the
  release's numerics (TF32 off); ``bf16`` asks for autocast on any device.
  :func:`precision_context` applies a resolved precision around a forward (and its backward).
* **Batch size.** A fixed size, or ``auto``: the largest power of two (up to :data:`AUTO_LIMIT`)
  for which a worst-case forward fits the device, probed once per (model, device, input shape,
  precision, method) and remembered in ``autobatch.json`` under the cache root; off CUDA no probe,
  :data:`AUTO_CPU_BATCH`. :class:`BatchSizer` holds the size a method uses.
* **Out of memory.** :func:`run_batches` halves the batch and retries the failed one; the smaller
  size then holds for the rest of the method's life (and is remembered under ``auto``).
* **No host waits in training loops.** :func:`to_device` sends host-built targets pinned and without
  waiting; :func:`read_losses` reads the steps' losses in one transfer every :data:`LOSS_READ_EVERY`
  steps instead of one wait per step.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

#: values of a precision option (``--precision`` / ``--set precision=``)
PRECISIONS = ("auto", "fp32", "bf16")
#: ``--batch-size auto`` off CUDA: no probing, this batch size
AUTO_CPU_BATCH = 32
#: ``--batch-size auto`` never goes above this: throughput saturates long before (ViLT-B/32 fills an
#: H100-class GPU at a few hundred passes), and a batch larger than a predict call's passes leaves
#: no batch to overlap with
AUTO_LIMIT = 1024


def check_precision(precision: Any) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (auto: bf16 autocast on CUDA, fp32 "
                         f"elsewhere; fp32: the release's numerics), got {precision!r}")


def resolve_precision(precision: str, device: Any) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere; other values unchanged."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if str(device).startswith("cuda") else "fp32"
    return precision


@contextmanager
def precision_context(device: Any, precision: str):
    """The forward's numerics: bf16 autocast for ``bf16``; on CUDA TF32 matmuls unless ``fp32``."""
    import torch

    dev = torch.device(device)
    flags = None
    if dev.type == "cuda":
        flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        if precision == "bf16":
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        if flags is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@contextmanager
def host_threads(device: Any):
    """On a CPU device, one intra-op thread for a pipeline's small tensor ops (windows of a few
    hundred thousand values gain little from a second thread, and wait for it when another process
    holds that core); the forward keeps torch's setting."""
    import torch

    n = torch.get_num_threads()
    if torch.device(device).type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


#: the environment variable of ``--threads``
THREADS_ENV = "CPTBENCH_THREADS"


def parse_threads(raw: Any, what: str = "--threads") -> list[int]:
    """Thread counts from ``raw`` (``2``, ``"2"``, ``"1,2,4"``): whole numbers >= 1, in order,
    without repeats. The one parser of ``--threads``, ``bench --threads`` and ``$CPTBENCH_THREADS``;
    a bad value is a usage error naming ``what`` and the value."""
    from cptbench.core.errors import UsageError

    out: list[int] = []
    for part in str(raw).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise UsageError(f"{what}={raw!r}: torch CPU threads must be whole numbers >= 1 (e.g. 1 or 1,2,4), "
                             f"got {part!r}" + ("; unset it or fix it." if what == THREADS_ENV else "."))
        if int(part) not in out:
            out.append(int(part))
    return out


def threads_setting(threads: int | None) -> int | None:
    """The thread count asked for: ``threads`` when given, else ``$CPTBENCH_THREADS``, else None
    (torch's own default: one per physical core). A bad value is a usage error naming it."""
    from cptbench.core.errors import UsageError

    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if not raw:
            return None
        counts = parse_threads(raw, THREADS_ENV)
        if len(counts) != 1:
            raise UsageError(f"{THREADS_ENV}={raw!r}: one thread count here (several only for `cptbench bench`).")
        threads = counts[0]
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    return int(threads)


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads for the forward and the pipeline's ops to ``threads`` (None:
    leave torch's default) and return the count in force."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is the device running out of memory."""
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


# ------------------------------------------------------------------------------- training loops
#: the training losses are read from the device once per this many steps (each read waits for it)
LOSS_READ_EVERY = 25


def to_device(values: Sequence[int], device: Any):
    """An int64 tensor of ``values`` on ``device``: pinned and copied without waiting on CUDA."""
    import torch

    host = torch.tensor(values, dtype=torch.long)
    if torch.device(device).type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def read_losses(pending: list) -> list[float]:
    """The losses of ``pending`` (device scalars) as floats, read with one transfer; empties it."""
    if not pending:
        return []
    import torch

    values = torch.stack(pending).float().cpu().tolist()
    pending.clear()
    return values


# ------------------------------------------------------------------------------------ batch loop
def run_batches(items: Sequence[Any], batch_size: int, build: Callable[[Sequence[Any]], Any],
                forward: Callable[[Any], Any], finish: Callable[[Sequence[Any], np.ndarray], None], *,
                device: Any, precision: str, on_batch_size: Callable[[int], None] | None = None,
                progress: Callable[[int], None] | None = None) -> int:
    """Run ``items`` in batches: ``forward(build(chunk))`` gives a (B, K) tensor, ``finish(chunk,
    array)`` consumes it on the host. On CUDA the result of batch i is copied back (pinned,
    non-blocking) and consumed only after batch i+1 has been built and launched, so the device is
    never idle while the host works. On out-of-memory the batch size is halved and the failed batch
    retried (``on_batch_size`` hears the new size; earlier results are kept). Returns the batch
    size finally used."""
    import torch

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    size, pos, pending = max(1, int(batch_size)), 0, None
    while pos < len(items):
        chunk = items[pos:pos + size]
        try:
            with host_threads(dev):
                inputs = build(chunk)
            with precision_context(dev, precision):
                out = forward(inputs)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
            if not is_oom(exc) or size == 1:
                raise
            if cuda:
                torch.cuda.empty_cache()
            size = max(1, size // 2)
            if on_batch_size is not None:
                on_batch_size(size)
            continue
        out = out.detach()
        if cuda:
            host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(out.float(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            ready = (chunk, host, event)
        else:
            ready = (chunk, out.float().numpy(), None)
        if pending is not None:
            _finish(pending, finish)
        pending = ready
        pos += len(chunk)
        if progress is not None:
            progress(pos)
    if pending is not None:
        _finish(pending, finish)
    return size


def _finish(pending, finish) -> None:
    chunk, host, event = pending
    if event is not None:
        event.synchronize()  # batch i-1, while batch i is already queued behind it
        host = host.numpy()
    finish(chunk, host)


# ------------------------------------------------------------------------------------ auto batch
def _autobatch_file() -> Path:
    from cptbench.core.hashing import cache_root

    return cache_root() / "autobatch.json"


def read_autobatch() -> dict[str, int]:
    """The batch sizes found so far, by key (empty when the cache file is missing or unreadable)."""
    try:
        data = json.loads(_autobatch_file().read_text())
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remember_batch_size(key: str, size: int) -> None:
    """Store the batch size found for ``key`` (atomic replace; a failure to write is ignored)."""
    path = _autobatch_file()
    data = read_autobatch()
    data[key] = int(size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass


def autobatch_key(model_name: str, device: Any, shape: str, precision: str, tag: str) -> str:
    """The cache key of an auto batch size: model, device (GPU name and memory), input shape,
    precision, the method's tag and torch's version."""
    import torch

    dev = torch.device(device)
    what = dev.type
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        what = f"{props.name}/{props.total_memory >> 20}MiB"
    return f"{model_name}|{what}|{shape}|{precision}|{tag}|torch {torch.__version__}"


def probe_batch_size(device: Any, key: str, probe: Callable[[int], None], limit: int = AUTO_LIMIT) -> int:
    """The largest power of two up to ``limit`` for which ``probe(n)`` (one worst-case forward of
    ``n`` passes) fits the device: read from the cache file under ``key``, or found and stored."""
    import torch

    known = read_autobatch().get(key)
    if known:
        return known
    best, size = 0, 8
    while size <= limit:
        try:
            probe(size)
            torch.cuda.synchronize(torch.device(device))
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            torch.cuda.empty_cache()
            break
        best, size = size, size * 2
    best = max(best, 1)
    remember_batch_size(key, best)
    return best


class BatchSizer:
    """The batch size of one method's forward passes under the run's policy.

    ``requested`` is the context's ``eval_batch_size`` (an int or ``"auto"``). The size is worked
    out on first use (:meth:`size`) and then held; :meth:`on_oom` lowers it for the rest of the
    method's life (and, under ``auto``, in the cache file)."""

    def __init__(self, requested: int | str, device: Any):
        self.requested = requested
        self.device = str(device)
        self.used: int | None = None
        self._key: str | None = None

    @property
    def auto(self) -> bool:
        """Whether the size is found by probing (``--batch-size auto``)."""
        return self.requested == "auto"

    def size(self, key: Callable[[], str] | None = None, probe: Callable[[int], None] | None = None) -> int:
        """The size to use now: the held one, the fixed one, or with ``auto`` on CUDA the probed one
        (``key()`` names the cache entry, ``probe(n)`` runs a worst-case forward of ``n`` passes; with
        either missing, the documented default :data:`AUTO_CPU_BATCH` without holding it)."""
        if self.used is not None:
            return self.used
        if not self.auto:
            self.used = max(1, int(self.requested))
        elif not self.device.startswith("cuda"):
            self.used = AUTO_CPU_BATCH
        elif key is not None and probe is not None:
            self._key = key()
            self.used = probe_batch_size(self.device, self._key, probe)
        else:
            return AUTO_CPU_BATCH
        return self.used

    def on_oom(self, size: int) -> None:
        """Out of memory at a batch: ``size`` from now on (remembered in the cache under ``auto``)."""
        self.used = int(size)
        if self._key:
            remember_batch_size(self._key, self.used)
