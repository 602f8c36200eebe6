"""Loading generative models: ``model_type`` -> family adapter, the model's parts from one folder
or hub id with every weight checked, and reuse of a loaded model across a process's jobs (the same
policy as the masked-LM backbones, :func:`cptbench.models.loading.reuse_loaded_models`)."""

from __future__ import annotations

import importlib
from pathlib import Path

from cptbench.core.errors import ModelError
from cptbench.models.generative import GenerativeAdapter

#: model_type -> (module, adapter class)
GENERATIVE_FAMILIES: dict[str, tuple[str, str]] = {
    "llava": ("cptbench.models.gen_llava", "LlavaAdapter"),
    "qwen2_vl": ("cptbench.models.gen_qwen2vl", "Qwen2VLAdapter"),
}


class UnsupportedGenerativeModel(ModelError):
    """The model is not of a generative family cptbench has an adapter for."""


def generative_adapter_class(model_type: str) -> type:
    """The adapter class of ``model_type`` (its module imported now)."""
    if model_type not in GENERATIVE_FAMILIES:
        raise UnsupportedGenerativeModel(
            f"model type {model_type!r} is not a generative vision-language family cptbench supports; the "
            f"vlm-colour and vlm-mark methods take {', '.join(sorted(GENERATIVE_FAMILIES))} models "
            f"(e.g. llava-hf/llava-1.5-7b-hf, Qwen/Qwen2-VL-2B-Instruct, or a folder from "
            f"cptbench.models.tiny_generative)")
    module, cls = GENERATIVE_FAMILIES[model_type]
    return getattr(importlib.import_module(module), cls)


def load_generative(name_or_path: str, device: str = "cpu") -> GenerativeAdapter:
    """Load a generative model with its tokenizer and image processor behind its family's adapter,
    in eval mode on ``device``, timed on the process's load clock. Every call returns an independent model (with
    :func:`~cptbench.models.loading.reuse_loaded_models` on, a copy of one read once per process)."""
    from cptbench.models.loading import PRISTINE, _stamp, timed_as_loading, warm_imports

    def key() -> tuple:  # the folder is walked only when reuse is on
        return ("generative", str(name_or_path), _stamp(name_or_path))

    warm_imports()
    with timed_as_loading():  # the run's load_seconds, not its fit or predict time
        return PRISTINE.get(key, lambda dev: _load(name_or_path, dev), str(device))


def _load(name_or_path: str, device: str) -> GenerativeAdapter:
    from cptbench.models.loading import model_type_of, resolve_model_path

    path = resolve_model_path(str(name_or_path))
    cls = generative_adapter_class(model_type_of(path))
    adapter = cls.from_pretrained(path, device=device)
    adapter.model_name = str(name_or_path)
    return adapter


def load_parts(model_cls, path: str, device: str, image_processor_cls):
    """Model (eval mode, on ``device``, every tensor filled from the checkpoint), tokenizer and
    image processor of one folder or hub id."""
    from transformers import AutoTokenizer

    from cptbench.models.loading import check_all_filled, quiet_progress

    with quiet_progress(enabled=Path(path).is_dir()):
        model, info = model_cls.from_pretrained(path, output_loading_info=True)
    check_all_filled(path, model)
    check_nothing_missing(path, model, info.get("missing_keys") or ())
    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = image_processor_cls.from_pretrained(path)
    model.to(device).eval()
    return model, tokenizer, processor


def check_nothing_missing(path: str, model, missing) -> None:
    """Refuse a model with weights the checkpoint did not hold (they would be random), except weights
    tied to one the checkpoint filled (an output layer sharing the input embeddings)."""
    if not missing:
        return
    params = dict(model.named_parameters(remove_duplicate=False))
    filled = {p.data_ptr() for n, p in params.items() if n not in set(missing)}
    untied = [n for n in missing if n not in params or params[n].data_ptr() not in filled]
    if untied:
        import transformers

        raise ModelError(f"model {path!r}: {len(untied)} weight(s) are not in the checkpoint as transformers "
                         f"{transformers.__version__} names them ({', '.join(sorted(untied)[:3])}"
                         f"{', ...' if len(untied) > 3 else ''}); they would be random. The folder was probably "
                         f"written by another transformers line: save it again with this one.")
