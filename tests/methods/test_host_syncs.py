"""Training loops without host waits: inside a fit, cptbench's own code reads nothing back from the
model's device (no ``.item()``, ``.cpu()``, ``.tolist()``, ``float()`` or ``bool()`` of a tensor), but
for the losses, read in one transfer every ``LOSS_READ_EVERY`` steps. Counted on the CPU with a
shim around those tensor methods, for CPT (device pipeline and reference path) and ft."""

from __future__ import annotations

import sys
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cptbench  # noqa: E402
import cptbench_baselines  # noqa: E402
from cptbench.methods import numerics  # noqa: E402

OURS = (str(Path(cptbench.__file__).parent), str(Path(cptbench_baselines.__file__).parent))
TORCH = str(Path(torch.__file__).parent)
#: what reads a tensor's value on the host (on a GPU: waits for the device)
READS = {"item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__", "__array__"}
#: what puts a host tensor on the model's device (the upload): its result lives "on the device"
UPLOADS = {"to", "cuda", "copy_"}
#: the loss-read interval the tests use (the library's is longer; a short fit reads once inside it)
READ_EVERY = 3


class DeviceTaint(torch.overrides.TorchFunctionMode):
    """Tensors "on the device" (on a CPU run, where every tensor is host memory): the model's
    parameters, whatever is uploaded with ``.to(...)``, and every result of an op on such a tensor.
    A read of such a tensor's value from cptbench's own code is a host wait on a GPU: counted."""

    def __init__(self, params):
        super().__init__()
        self._ids: dict[int, weakref.ref] = {}  # by identity (a tensor's == is elementwise)
        for p in params:
            self._add(p)
        self.calls: list[str] = []
        self.allowed = 0

    def _add(self, t) -> None:
        key = id(t)
        self._ids[key] = weakref.ref(t, lambda _, key=key: self._ids.pop(key, None))

    def _has(self, t) -> bool:
        ref = self._ids.get(id(t))
        return ref is not None and ref() is t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        inputs += [t for a in (*args, *kwargs.values()) if isinstance(a, (list, tuple)) for t in a
                   if isinstance(t, torch.Tensor)]
        tainted = any(self._has(t) for t in inputs)
        if name in READS and tainted and not self.allowed:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(TORCH):
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(OURS):
                self.calls.append(f"step {self.steps}: {name} at {Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
        out = func(*args, **kwargs)
        upload = name in UPLOADS and (name == "cuda" or "device" in kwargs or any(
            isinstance(a, (str, torch.device)) for a in args[1:]))  # .to(torch.int64) changes the dtype only
        if (tainted or upload) and name not in READS:
            for t in (out if isinstance(out, (list, tuple)) else [out]):
                if isinstance(t, torch.Tensor):
                    self._add(t)
        return out


@contextmanager
def sync_shim(monkeypatch, model):
    """Count the host waits of cptbench's code during the block (:class:`DeviceTaint`);
    ``read_losses``, the loops' one allowed read, is listed as such. Each wait is listed with the
    number of training steps finished when it happened (``progress`` marks the end of a step), so
    the waits inside steps 2..N are those listed after step 1."""
    import cptbench.cpt.training  # noqa: F401 - imported so it can be patched below
    import cptbench_baselines.finetune  # noqa: F401

    mode = DeviceTaint(list(model.parameters()))
    real_read = numerics.read_losses

    def counted_read(pending):
        mode.allowed += 1
        try:
            if pending:
                mode.calls.append(f"step {mode.steps}: read_losses")
            return real_read(pending)
        finally:
            mode.allowed -= 1

    for mod in ("cptbench.methods.numerics", "cptbench.cpt.training", "cptbench_baselines.finetune"):
        monkeypatch.setattr(sys.modules[mod], "read_losses", counted_read)
        monkeypatch.setattr(sys.modules[mod], "LOSS_READ_EVERY", READ_EVERY)  # a short loop reads inside it too
    mode.steps = 0

    def progress(stage, done, total):
        mode.steps = done

    with mode:
        yield mode.calls, progress


def _train(tmp_path, n=4):
    from PIL import Image

    from cptbench.data.examples import Example, Label, TrainExample
    from cptbench.data.images import file_image

    rng = np.random.default_rng(0)
    boxes = np.array([[2, 2, 14, 14], [18, 2, 30, 14], [2, 18, 14, 30]], float)
    out = []
    for i in range(n):
        path = tmp_path / f"t{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        ex = Example(example_id=f"{i}:0", ref_id=i, sent_id=0, image_id=i, image_handle=file_image(path), image_size=(32, 32),
                     expression="the man", boxes=boxes, categories=("man",) * 3, candidate_key=f"k{i}")
        out.append(TrainExample(ex, Label(ex.example_id, boxes[i % 3])))
    return out


@pytest.mark.parametrize("pipeline", ["device", "reference"])
def test_cpt_fit_reads_nothing_back_but_the_losses_once(tmp_path, monkeypatch, tiny_vilt_dir, pipeline):
    from cptbench.cpt.config import CptConfig
    from cptbench.cpt.method import CptBlockMethod
    from cptbench.methods.base import MethodContext

    train = _train(tmp_path)
    steps = READ_EVERY + 2  # one read inside the loop, one after it
    m = CptBlockMethod(CptConfig(steps=steps, pipeline=pipeline), MethodContext(model=str(tiny_vilt_dir)))
    m.setup()  # model load and vocabulary checks are not the loop
    with sync_shim(monkeypatch, m.adapter.model) as (calls, progress):
        object.__setattr__(m.context, "progress", progress)
        m.fit(train, seed=0)
    every = READ_EVERY
    assert calls == [f"step {every - 1}: read_losses", f"step {steps}: read_losses"], calls  # and nothing else
    assert len(m.train_result.losses) == steps and all(np.isfinite(m.train_result.losses))


@pytest.mark.parametrize("probe", [False, True], ids=["ft", "ft-head"])
def test_ft_fit_reads_nothing_back_but_the_losses_once(tmp_path, monkeypatch, tiny_vilt_dir, probe):
    from cptbench.methods.base import MethodContext
    from cptbench_baselines.finetune import FineTuneConfig, FineTuneMethod, LinearProbeMethod

    from cptbench.models.loading import load_adapter

    train = _train(tmp_path)
    adapter = load_adapter(str(tiny_vilt_dir))
    cls = LinearProbeMethod if probe else FineTuneMethod
    steps = READ_EVERY + 2
    m = cls(FineTuneConfig(steps=steps), MethodContext(model=str(tiny_vilt_dir), adapter=adapter))
    with sync_shim(monkeypatch, adapter.model) as (calls, progress):
        object.__setattr__(m.context, "progress", progress)
        m.fit(train, seed=0)
    every = READ_EVERY
    # step 0: ft-head's frozen features, before the loop; step N: after the last step (the last losses, the
    # pooling-fallback count read once)
    inside = [c for c in calls if not c.startswith(("step 0:", f"step {steps}:"))]
    assert inside == [f"step {every - 1}: read_losses"], calls
    assert len([c for c in calls if c.startswith(f"step {steps}:")]) <= 2, calls
    assert len(m.losses) == steps
