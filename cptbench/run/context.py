"""The one builder of a method's :class:`~cptbench.methods.base.MethodContext`.

Every caller that instantiates a method for a task (the run engine, ``show``, ``data audit``,
``bench``, the Python API) goes through :func:`build_context`, so a method sees the same task
metric, numerics and batch policy wherever it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cptbench.core.boxes import MetricSpec
from cptbench.methods.base import Method, MethodContext, ProgressFn, no_progress
from cptbench.run.device import method_precision
from cptbench.tasks.spec import TaskSpec


def build_context(task: TaskSpec | None, method_cls: type[Method], config: Any, *, model: str | None = None,
                  device: str = "cpu", shots: int = 0, eval_batch_size: int | str = 32,
                  progress: ProgressFn = no_progress, artifacts_dir: Path | None = None,
                  adapter: Any = None) -> MethodContext:
    """The context of ``method_cls`` (with ``config``) on ``task``: the task's metric, the resolved
    precision of the run's device policy, the batch size (or ``"auto"``). ``task=None``: a workload
    outside any task (benchmarks), with the default metric."""
    metric = task.metric if task is not None else MetricSpec()
    return MethodContext(model=model, device=str(device), task=task.name if task is not None else "", metric=metric,
                         shots=int(shots),
                         eval_batch_size=eval_batch_size, precision=method_precision(method_cls, config, device),
                         progress=progress, artifacts_dir=artifacts_dir, adapter=adapter)


def job_context(job, *, device: str, eval_batch_size: int | str, progress: ProgressFn,
                artifacts_dir: Path | None) -> MethodContext:
    """The context of a prepared :class:`~cptbench.run.plan.Job`."""
    return build_context(job.task, job.method_cls, job.config, model=job.model_path or job.model, device=device,
                         shots=job.shots, eval_batch_size=eval_batch_size, progress=progress,
                         artifacts_dir=artifacts_dir)
