"""Sealed evaluation: a method's ``fit`` and ``predict`` run in a separate process that never holds
an evaluation label, a path into the data root or the results folder.

An in-process plug-in can reach anything of the harness's: an image handle's private paths lead to
the data root and its annotations, the caller's frames and ``gc.get_objects()`` hold the labels,
and the results folder holds earlier runs' predictions. Under ``--sealed`` (the default for every
method that is not part of cptbench) the method lives in a *spawned* process (a fresh interpreter:
nothing of the parent's memory is copied into it) and is sent only what a method may see:

* the examples, each with its image as decoded pixels (a
  :class:`~cptbench.data.memory_images.MemoryImageSource`: no file, no path);
* the k-shot training examples with their labels, for ``fit``;
* its config and a context whose ``artifacts_dir`` is a scratch folder outside the results folder
  (moved into the results folder by the parent after the job).

The parent keeps the evaluation labels and scores the returned score arrays with the one scorer.
The process starts in an empty temporary folder with the ``CPTBENCH_*`` folder variables removed.
What sealing does not do: it is not an operating-system sandbox. A plug-in that searches the disk
for annotation files can still open them; sealing closes the routes through cptbench's own objects.

One sealed process serves every sealed job of a method class in a run (a fresh method object per
job), so a run pays the start-up once per class.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Sequence

import numpy as np

from cptbench.core.errors import CptbenchError

#: images the sealed process keeps between calls before the parent asks it to drop some
HELD_IMAGES = 256
#: environment variables a sealed process does not inherit (they name folders with labels)
SCRUBBED_ENV = ("CPTBENCH_DATA_ROOT", "CPTBENCH_RESULTS", "CPTBENCH_TASKS_PATH", "CPTBENCH_CACHE")


class SealedMethodError(RuntimeError):
    """A sealed method failed in its process (the message names the method and its error)."""


def is_part_of_cptbench(method_cls: type) -> bool:
    """Whether ``method_cls`` ships with cptbench (its own package or ``cptbench_baselines``)."""
    module = getattr(method_cls, "__module__", "") or ""
    return module.split(".")[0] in ("cptbench", "cptbench_baselines")


def should_seal(method_cls: type, sealed: bool | None) -> bool:
    """The sealing policy: ``None`` (default) seals every method that is not part of cptbench;
    ``True`` every method; ``False`` none. A method that declares ``uses_eval_labels`` (the oracle)
    is never sealed: it needs the labels."""
    if getattr(method_cls, "uses_eval_labels", False):
        return False
    return (not is_part_of_cptbench(method_cls)) if sealed is None else bool(sealed)


# ---------------------------------------------------------------------------------------- parent
def _example_row(ex) -> tuple:
    return (ex.example_id, ex.ref_id, ex.sent_id, ex.image_id, ex.image_key, tuple(ex.image_size), ex.expression,
            np.asarray(ex.boxes, dtype=np.float64), tuple(ex.categories), tuple(ex.masks), ex.split, ex.candidate_key)


class _Worker:
    """One spawned process and the pipe to it."""

    def __init__(self):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child,), daemon=True, name="cptbench-sealed")
        self.process.start()
        child.close()
        self.held: dict[str, None] = {}  # image keys the process holds, least recently used first

    def call(self, op: str, *args: Any) -> Any:
        try:
            self.conn.send((op, args))
            status, payload = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
            raise SealedMethodError(f"the sealed method process ended unexpectedly (exit code "
                                    f"{self.process.exitcode}) during {op!r}") from exc
        if status == "ok":
            return payload
        name, message, code, tb = payload
        if code is not None:
            from cptbench.core import errors

            cls = getattr(errors, name, None)
            if isinstance(cls, type) and issubclass(cls, CptbenchError):
                raise cls(message)
            raise CptbenchError(message)
        raise SealedMethodError(f"{name}: {message} (in the sealed method process; its traceback ends: "
                                f"{tb.strip().splitlines()[-1] if tb.strip() else '-'})")

    def images_for(self, examples: Sequence, keep: frozenset = frozenset()) -> tuple[dict, list]:
        """(images to send, keys to drop) so the process holds every image of ``examples``."""
        send = {}
        for ex in examples:
            key = ex.image_key
            if key in self.held:
                self.held.pop(key)
            else:
                send[key] = ex.image()
            self.held[key] = None
        drop = []
        for key in list(self.held):
            if len(self.held) - len(drop) <= HELD_IMAGES:
                break
            if key not in keep and key not in send:
                drop.append(key)
        for key in drop:
            self.held.pop(key)
        return send, drop

    def close(self) -> None:
        try:
            self.conn.send(("close", ()))
        except (OSError, ValueError):
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


_WORKERS: dict[str, _Worker] = {}


def _worker_for(method_cls: type) -> _Worker:
    key = f"{method_cls.__module__}.{method_cls.__qualname__}"
    worker = _WORKERS.get(key)
    if worker is None or not worker.process.is_alive():
        worker = _WORKERS[key] = _Worker()
    return worker


def close_workers() -> None:
    """End every sealed process of this process (the engine calls it when a run is over)."""
    for worker in list(_WORKERS.values()):
        worker.close()
    _WORKERS.clear()


class SealedMethod:
    """The parent's stand-in for a method running sealed: the :class:`~cptbench.methods.base.Method`
    calls the engine makes, each sent to the method's process."""

    sealed = True

    def __init__(self, method_cls: type, config: Any, context, threads: int | None = None):
        from dataclasses import replace

        from cptbench.methods.base import no_progress

        self.method_cls, self.config, self.name = method_cls, config, method_cls.name
        self.uses_eval_labels = False
        self.context = context
        self._worker = _worker_for(method_cls)
        self._train_keys: frozenset = frozenset()
        child_context = replace(context, progress=no_progress, adapter=None)
        import pickle

        try:
            pickle.dumps(method_cls)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            from cptbench.core.errors import UsageError

            raise UsageError(f"method {self.name!r} cannot run sealed: its class {method_cls.__qualname__!r} is not "
                             f"importable by name from module {method_cls.__module__!r} ({exc}); register it from an "
                             f"importable module (an entry point of your package), or trust it with --no-sealed.") from None
        self._worker.call("init", method_cls, config, child_context, threads)

    def fit(self, train, seed: int) -> None:
        """Fit in the sealed process on the training examples and their labels."""
        examples = [te.example for te in train]
        self._train_keys = frozenset(ex.image_key for ex in examples)
        images, drop = self._worker.images_for(examples)
        rows = [(_example_row(te.example), (te.label.example_id, np.asarray(te.label.box, dtype=np.float64),
                                            te.label.mask)) for te in train]
        self._worker.call("fit", images, drop, rows, int(seed))

    def predict(self, examples) -> list:
        """Score in the sealed process; the parent scores the arrays against the labels it keeps."""
        images, drop = self._worker.images_for(examples, self._train_keys)
        return self._worker.call("predict", images, drop, [_example_row(ex) for ex in examples])

    def describe(self) -> dict[str, Any]:
        """The method's own fit facts, plus ``sealed: true``."""
        return {**self._worker.call("describe"), "sealed": True}

    def take_counters(self) -> dict[str, Any]:
        """The method's counters since the last call."""
        return self._worker.call("take_counters")

    def perf_info(self) -> dict[str, Any]:
        """The method's performance facts (with the sealed process's torch threads)."""
        return self._worker.call("perf_info")

    def load_clock(self) -> float:
        """Seconds the sealed process has spent loading models so far."""
        return float(self._worker.call("load_clock"))

    def set_eval_labels(self, labels) -> None:
        """Never: a sealed method does not receive evaluation labels."""
        raise RuntimeError(f"method {self.name!r} is sealed and cannot receive evaluation labels")

    def sync_fitted(self, dist) -> None:
        """Data-parallel evaluation does not run sealed methods (refused before any fit)."""
        raise RuntimeError("sealed methods do not run under torchrun")


# ----------------------------------------------------------------------------------------- child
def _rebuild(row, source):
    from cptbench.data.examples import Example

    (example_id, ref_id, sent_id, image_id, key, size, expression, boxes, categories, masks, split, candidate_key) = row
    return Example(example_id=example_id, ref_id=ref_id, sent_id=sent_id, image_id=image_id,
                   image_handle=source.handle(key, size), image_size=size, expression=expression, boxes=boxes,
                   categories=categories, masks=masks, split=split, candidate_key=candidate_key)


def _scores(values) -> list:
    out = []
    for s in values:
        try:
            out.append(np.asarray(s, dtype=np.float64))
        except (TypeError, ValueError):
            out.append("not numeric")  # the parent's scorer calls it invalid
    return out


def _plain(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, np.generic) else
                                 (o.tolist() if isinstance(o, np.ndarray) else str(o))))


def serve(conn) -> None:
    """The sealed process: build the method, then answer the parent's calls until it closes the
    pipe (or dies: the pipe's end ends this process too)."""
    import tempfile

    from cptbench.data.examples import Label, TrainExample
    from cptbench.data.memory_images import MemoryImageSource

    for name in SCRUBBED_ENV:
        os.environ.pop(name, None)
    os.chdir(tempfile.mkdtemp(prefix="cptbench-sealed-"))
    source = MemoryImageSource()
    method = None
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return
        if op == "close":
            return
        try:
            if op == "init":
                cls, config, context, threads = args
                if threads:
                    from cptbench.methods.numerics import apply_threads

                    apply_threads(threads)
                method = cls(config, context)
                result = None
            elif op == "fit":
                images, drop, rows, seed = args
                source.put(images)
                source.drop(drop)
                train = [TrainExample(_rebuild(row, source), Label(*label)) for row, label in rows]
                method.fit(train, seed)
                result = None
            elif op == "predict":
                images, drop, rows = args
                source.put(images)
                source.drop(drop)
                result = _scores(method.predict([_rebuild(row, source) for row in rows]))
            elif op in ("describe", "take_counters", "perf_info"):
                result = _plain(getattr(method, op)())
                if op == "perf_info" and "torch" in sys.modules:
                    result["threads"] = int(sys.modules["torch"].get_num_threads())
            elif op == "load_clock":
                from cptbench.models.loading import load_clock

                result = load_clock()
            else:
                raise ValueError(f"unknown call {op!r}")
            conn.send(("ok", result))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
            code = getattr(exc, "exit_code", None) if isinstance(exc, CptbenchError) else None
            conn.send(("error", (type(exc).__name__, str(exc), code, traceback.format_exc())))
