"""``load_adapter``: a hub id, a local folder or ``bundled:<name>`` -> a :class:`VLAdapter`.

The adapter is chosen by the config's ``model_type``. Every call returns an independent model:
methods train the weights in place, so adapters are never shared. A process that runs many jobs
(:func:`reuse_loaded_models`) reads a model from disk once, keeps it untouched on the CPU, and hands
each call a deep copy moved to the asked device.

The adapters' ``from_pretrained`` read their parts with :func:`load_hf_parts` (model, tokenizer
and image processor from one folder or hub id, with every tensor of the checkpoint checked:
:func:`check_head_loaded`, :func:`check_all_filled`). transformers is imported only inside
functions, so this module stays import-light.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from cptbench.core.errors import ModelError
from cptbench.models.base import VLAdapter

#: model_type -> (module, adapter class)
ADAPTERS: dict[str, tuple[str, str]] = {
    "vilt": ("cptbench.models.vilt", "ViltAdapter"),
    "flava": ("cptbench.models.flava", "FlavaAdapter"),
    "bridgetower": ("cptbench.models.bridgetower", "BridgeTowerAdapter"),
}

#: the model types of the masked-LM methods (CPT, ft): those with an adapter here
MASKED_LM_TYPES: tuple[str, ...] = tuple(sorted(ADAPTERS))

BUNDLED_PREFIX = "bundled:"
_BUNDLED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class UnsupportedModelError(ModelError):
    """The model's ``model_type`` has no adapter."""


def assets_dir() -> Path:
    """The folder of the bundled models (``cptbench/assets``)."""
    return Path(__file__).resolve().parent.parent / "assets"


def resolve_model_path(name_or_path: str) -> str:
    """``bundled:<name>`` -> the folder ``cptbench/assets/<name>``; anything else unchanged."""
    name_or_path = str(name_or_path)
    if not name_or_path.startswith(BUNDLED_PREFIX):
        return name_or_path
    name = name_or_path[len(BUNDLED_PREFIX):]
    if not _BUNDLED_NAME.match(name) or ".." in name:
        raise ValueError(f"invalid bundled model name {name!r} (letters, digits, '_', '.', '-' only)")
    folder = assets_dir() / name
    if not (folder / "config.json").is_file():
        available = sorted(p.name for p in assets_dir().iterdir() if (p / "config.json").is_file()) if assets_dir().is_dir() else []
        raise FileNotFoundError(
            f"bundled model {name!r} is not installed: no model folder at {folder}. "
            f"Bundled models available: {', '.join(available) or 'none'}."
        )
    return str(folder)


def local_model_type(name_or_path: str) -> str | None:
    """The ``model_type`` in the ``config.json`` of a local or bundled model folder; None for
    anything else (a hub id is not looked up: nothing is fetched before a run starts)."""
    try:
        cfg = Path(resolve_model_path(name_or_path)).expanduser() / "config.json"
        if not cfg.is_file():
            return None
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return str(model_type) if model_type else None


def supported_model_types() -> list[str]:
    """The config ``model_type`` values that have an adapter, sorted."""
    return sorted(ADAPTERS)


def model_type_of(path: str, trust_remote_code: bool = False) -> str:
    """The ``model_type`` of a local model folder (its config.json) or a hub id (its config, from the
    hub or its cache): what picks the adapter of every model family."""
    local = Path(path).expanduser()
    if local.is_dir():
        cfg_file = local / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{path!r} is a folder without a config.json: not a model folder")
        model_type = json.loads(cfg_file.read_text()).get("model_type")
        if model_type:
            return str(model_type)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise OSError(
            f"cannot load the config of model {path!r}: not a local model folder, and not found on the "
            f"Hugging Face hub or in its local cache (offline runs need the model downloaded first). "
            f"Original error: {exc}"
        ) from exc
    return str(config.model_type)


def adapter_class(model_type: str) -> type:
    """The adapter class serving ``model_type`` (its module imported now), or
    :class:`UnsupportedModelError` naming the supported types."""
    if model_type not in ADAPTERS:
        from cptbench.models.dual_encoder import DUAL_ENCODERS

        hint = (f"; a {model_type!r} model is a dual encoder: the visual-prompt methods (clip-crop, clip-blur, "
                f"reclip, clip-circle, clip-cpt) take it" if model_type in DUAL_ENCODERS else "")
        raise UnsupportedModelError(
            f"model type {model_type!r} has no cptbench adapter; supported model types: "
            f"{', '.join(supported_model_types())} (masked-LM vision-language models){hint}"
        )
    module, cls = ADAPTERS[model_type]
    return getattr(importlib.import_module(module), cls)


class _PristineModels:
    """Loaded models kept unchanged, so a process that runs many jobs (a sweep worker, a long
    ``run``) reads each model from disk once: every :func:`load_adapter` call then gets a deep copy
    moved to its device, as independent as a fresh load (methods train their copy in place).

    The kept copies live on the CPU (a GPU holds only the jobs' own copies) and at most
    ``capacity`` of them are kept, least recently used first out. Off unless enabled."""

    def __init__(self, capacity: int = 2):
        self.enabled = False
        self.capacity = int(capacity)
        self._models: OrderedDict[tuple, VLAdapter] = OrderedDict()
        self.loads = 0
        self.copies = 0

    def get(self, key: Callable[[], tuple], load: Callable[[str], VLAdapter], device: str) -> VLAdapter:
        """A model for ``device``: ``load(device)`` when off; else a copy of the kept CPU model
        under ``key()`` (loaded with ``load("cpu")`` the first time)."""
        import copy

        if not self.enabled:
            self.loads += 1
            return load(device)
        k = key()
        kept = self._models.get(k)
        if kept is None:
            self.loads += 1
            kept = load("cpu")
            self._models[k] = kept
            while len(self._models) > max(1, self.capacity):
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(k)
        self.copies += 1
        return copy.deepcopy(kept).to(device)

    def clear(self) -> None:
        self._models.clear()


PRISTINE = _PristineModels()


def reuse_loaded_models(enabled: bool = True) -> None:
    """Keep each loaded model once in this process and hand out copies (see :class:`_PristineModels`)."""
    PRISTINE.enabled = enabled
    if not enabled:
        PRISTINE.clear()


def _stamp(name_or_path: str) -> tuple:
    """What a cached copy is valid for: a local folder's files with their sizes and modification
    times (replaced weights are never served from the cache); a hub id as given."""
    try:
        folder = Path(resolve_model_path(str(name_or_path))).expanduser()
    except (FileNotFoundError, ValueError):
        return ()
    if not folder.is_dir():
        return ()
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_adapter(name_or_path: str, device: str = "cpu", *, trust_remote_code: bool = False, **adapter_kwargs: Any) -> VLAdapter:
    """Load a model with its tokenizer and image processor behind the adapter of its type.

    ``name_or_path``: a hub id, a local folder (as written by ``save_pretrained`` or
    ``build_tiny_model``) or ``bundled:<name>`` (a folder shipped in ``cptbench/assets``).
    Remote code runs only with ``trust_remote_code=True``. The model is put in eval mode on
    ``device``; each call returns a new, independent model (when :func:`reuse_loaded_models` is
    on, a copy of one loaded once per process and kept on the CPU).
    """
    def key() -> tuple:  # the folder is walked only when the cache is on
        return (str(name_or_path), _stamp(name_or_path), bool(trust_remote_code), tuple(sorted(adapter_kwargs.items())))

    warm_imports()  # timed on its own
    with timed_as_loading():
        return PRISTINE.get(key, lambda dev: _load(name_or_path, dev, trust_remote_code, **adapter_kwargs), str(device))


@contextmanager
def timed_as_loading():
    """Count the time spent inside the block on the process's load clock (:func:`load_clock`): every
    model loader (masked-LM backbones here, generative models in :mod:`cptbench.models.gen_loading`,
    dual encoders in :mod:`cptbench.models.dual_encoder`) calls :func:`warm_imports` and then reads
    its weights inside one, so records show it as ``load_seconds``, not fit or predict time."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _LOAD_CLOCK[0] += time.perf_counter() - start


#: seconds this process has spent loading models (imports, reading weights, copies), in total
_LOAD_CLOCK = [0.0]
_WARM = [False]


def load_clock() -> float:
    """Seconds this process has spent in :func:`load_adapter` and :func:`warm_imports` so far: the
    run engine subtracts what a fit or predict call spent here and records it as ``load_seconds``."""
    return _LOAD_CLOCK[0]


def warm_imports() -> None:
    """Import torch and transformers' model code once per process, timed as loading (the first
    import of torch alone is about a second; without this it would land in the first predict)."""
    if _WARM[0]:
        return
    start = time.perf_counter()
    try:
        importlib.import_module("torch")
        importlib.import_module("transformers")
    finally:
        _WARM[0] = True
        _LOAD_CLOCK[0] += time.perf_counter() - start


def _load(name_or_path: str, device: str, trust_remote_code: bool, **adapter_kwargs: Any) -> VLAdapter:
    path = resolve_model_path(name_or_path)
    model_type = model_type_of(path, trust_remote_code)
    cls = adapter_class(model_type)
    try:
        adapter = cls.from_pretrained(path, device=device, trust_remote_code=trust_remote_code, **adapter_kwargs)
    except (ModelError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint shows up as many library exceptions
        if not _is_unreadable_weights(exc):
            raise
        raise ModelError(f"model {name_or_path!r}: its weights cannot be read ({_weights_files(path)}: "
                         f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else '-'}). "
                         f"The file is truncated or not a weights file: download or save the model again "
                         f"(save_pretrained writes model.safetensors).") from exc
    if str(name_or_path).startswith(BUNDLED_PREFIX):
        adapter.model_name = str(name_or_path)
    return adapter


def _weights_files(path: Any) -> str:
    """The weights files of a model folder, for messages (the path itself for a hub id)."""
    folder = Path(str(path))
    if not folder.is_dir():
        return str(path)
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack"))
    return ", ".join(str(folder / n) for n in names) or f"{folder} (no weights file)"


def _is_unreadable_weights(exc: BaseException) -> bool:
    """Whether ``exc`` (raised while reading a checkpoint) says the weights file is broken: a
    safetensors header error, an unpicklable or truncated torch file, a zip that is not one."""
    import pickle
    import zipfile

    name = type(exc).__name__
    text = str(exc).lower()
    if name in ("SafetensorError", "HeaderTooLarge", "UnpicklingError", "BadZipFile") or isinstance(
            exc, (pickle.UnpicklingError, zipfile.BadZipFile, EOFError)):
        return True
    return isinstance(exc, (RuntimeError, OSError, ValueError)) and any(w in text for w in (
        "deserializ", "header", "mmap", "pytorchstreamreader", "zip archive", "unpickl", "invalid load key",
        "central directory", "truncated", "unexpected eof", "corrupt"))


def check_head_loaded(path: str, loading_info: dict, head_key: str) -> None:
    """Refuse a checkpoint whose masked-LM head was not in the file (it would be random)."""
    missing = set(loading_info.get("missing_keys") or ())
    if head_key in missing:
        raise ValueError(
            f"model {path!r} has no trained masked-LM head ({head_key} is missing from the checkpoint): "
            f"CPT reads masked-LM logits, so it needs a checkpoint pre-trained with MLM "
            f"(e.g. dandelin/vilt-b32-mlm, not a VQA or retrieval fine-tune)"
        )


def check_all_filled(path: str, model) -> None:
    """Refuse a loaded model with a parameter or buffer still on the meta device: the checkpoint
    did not fill it (a layout this transformers version cannot read), so it holds no value."""
    from cptbench.models.compat import meta_tensors

    empty = meta_tensors(model)
    if empty:
        import transformers

        raise ModelError(
            f"model {path!r}: {len(empty)} tensor(s) were not filled from the checkpoint with transformers "
            f"{transformers.__version__} ({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}); the file's "
            f"layout is not one cptbench can read with this version (see docs/compat.md). Re-save the model "
            f"with this transformers version or install a supported one."
        )


class quiet_progress:
    """Turn transformers' tqdm bars ("Loading weights", "Writing model shards") off inside the
    block and restore the previous setting after it (the library never prints; the CLI decides)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._was_on = False

    def __enter__(self):
        if self.enabled:
            from transformers.utils import logging as hf_logging

            self._was_on = hf_logging.is_progress_bar_enabled()
            if self._was_on:
                hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        if self.enabled and self._was_on:
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()
        return False


def load_hf_parts(model_cls, path: str, device: str, trust_remote_code: bool, head_param: str,
                  processor_cls, **model_kwargs):
    """Model (eval mode, on ``device``), tokenizer and image processor from one folder or hub id,
    refusing a checkpoint whose masked-LM head (``head_param``) was not in the file.

    ``model_kwargs`` override config attributes. A checkpoint written by the other transformers
    line (4.57 / 5.x) is read into the installed layout (:func:`cptbench.models.compat.plan_load`:
    renamed head-bias keys, tying decided by the file), so every tensor of the file lands
    unchanged; a parameter the file did not fill is refused, never left random or on meta."""
    from transformers import AutoTokenizer

    from cptbench.models.compat import Checkpoint, plan_load

    config = model_cls.config_class.from_pretrained(path, **model_kwargs)  # the adapter's own class: no remote code
    config, key_mapping = plan_load(model_cls, path, config, Checkpoint.find(path))
    extra = {} if key_mapping is None else {"key_mapping": key_mapping}
    # a local folder loads without progress bars; a hub download keeps its own
    with quiet_progress(enabled=Path(path).is_dir()):
        model, info = model_cls.from_pretrained(path, config=config, output_loading_info=True,
                                                trust_remote_code=trust_remote_code, **extra)
    check_head_loaded(path, info, head_param)
    check_all_filled(path, model)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    processor = processor_cls.from_pretrained(path)
    model.to(device).eval()
    return model, tokenizer, processor
