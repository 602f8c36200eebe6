"""Data-parallel evaluation under ``torchrun`` / ``accelerate launch``.

With ``WORLD_SIZE > 1`` in the environment the runner (:mod:`cptbench.run.engine`) works like this:

* every rank plans and checks the same jobs; rank 0 alone takes the run locks and decides which runs
  are pending (broadcast to the others), and rank 0 alone writes to the results store;
* each job is fitted on every rank with the same seeds (few-shot fits are at most 500 steps of at
  most 32 passes: splitting such a batch over GPUs would be dominated by gradient all-reduces),
  then rank 0's fitted state is broadcast (:meth:`Method.sync_fitted`) so every rank scores with
  one model even where kernels are not bit-deterministic;
* a split is sharded by image: the presentation order's images are dealt round-robin to the ranks,
  so a painted copy is built on one rank only; each round every rank predicts its next chunk, the
  rows and counters are gathered on rank 0 (``gather_object``: no padding, so no duplicates) and
  saved as one chunk. A killed rank takes the group down (torchrun's agent); rank 0's saved chunks
  are the resume point, as in one process.

For a grid of many fitted runs, job-level parallelism (``cptbench sweep --ray``, one job per GPU) uses
GPUs better than sharding each run; both give the same records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class Dist:
    """The process group this process belongs to (a single process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        """Whether more than one process takes part."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes)."""
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order); ``None`` elsewhere."""
        if not self.active:
            return [obj]
        import torch.distributed as td

        out = [None] * self.world if self.is_main else None
        td.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as td

        box = [obj if self.is_main else None]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_module(self, module) -> None:
        """Overwrite every rank's parameters and buffers with rank 0's (in place)."""
        if not self.active or module is None:
            return
        import torch
        import torch.distributed as td

        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                if self.backend == "gloo" and t.device.type != "cpu":
                    cpu = t.detach().cpu()
                    td.broadcast(cpu, src=0)
                    t.copy_(cpu)
                else:
                    td.broadcast(t.data, src=0)




_current: Dist | None = None


def _env_int(name: str, default: int | None = None) -> int:
    """An integer environment variable of the launcher; a usage error naming it otherwise."""
    from cptbench.core.errors import UsageError

    raw = os.environ.get(name, "")
    if raw.strip() == "" and default is not None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not an integer; unset it, or launch with torchrun "
                         f"(`torchrun --nproc_per_node N -m cptbench run ...`), which sets it.") from None
    if value < 0:
        raise UsageError(f"{name}={value} is negative; unset it, or launch with torchrun, which sets it.")
    return value


def world_size() -> int:
    """``$WORLD_SIZE`` (1 when unset): more than 1 means a torchrun / accelerate launch."""
    return max(1, _env_int("WORLD_SIZE", 1))


def from_environment(device: str = "cpu") -> Dist:
    """The process group of a torchrun / accelerate launch (initialised once), or a single process.
    ``WORLD_SIZE > 1`` without the rest of a launcher's environment (``RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) is a usage error saying how to launch."""
    from cptbench.core.errors import UsageError

    global _current
    if _current is not None:
        return _current
    world = world_size()
    if world <= 1:
        _current = Dist()
        return _current
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise UsageError(f"WORLD_SIZE={world} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
                         f"data-parallel runs are launched with torchrun, which sets them "
                         f"(`torchrun --nproc_per_node {world} -m cptbench run ...`); or unset WORLD_SIZE.")
    rank = _env_int("RANK")
    if rank >= world:
        raise UsageError(f"RANK={rank} is not below WORLD_SIZE={world}; launch with torchrun.")
    import torch
    import torch.distributed as td

    local = _env_int("LOCAL_RANK", 0)
    backend = "nccl" if str(device).startswith("cuda") and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not td.is_initialized():
        td.init_process_group(backend=backend)
    _current = Dist(rank=rank, world=world, local_rank=local, backend=backend)
    return _current


def rank_device(device: str, dist: Dist) -> str:
    """``cuda`` becomes ``cuda:<local rank>`` under torchrun; anything else is kept."""
    if dist.active and device == "cuda":
        return f"cuda:{dist.local_rank}"
    return device
