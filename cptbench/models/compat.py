"""What differs between the transformers lines cptbench supports (4.57.x and 5.x).

Each difference is detected on the installed classes (their signatures and module layout), never
by catching an error and trying something else, so a new release that changes one of them fails
loudly in the tests instead of silently doing the wrong thing. docs/compat.md lists them.

* Tokenizer construction. 5.x tokenizer classes are backed by ``tokenizers`` and take the vocabulary
  itself (``BertTokenizer(vocab=..., ...)``, ``RobertaTokenizer(vocab=..., merges=...)``); 5.x's
  ``BertTokenizerFast`` is an alias that ignores ``vocab_file``. 4.x classes read files
  (``vocab_file``, ``merges_file``) and have a separate fast class.
* Masked-LM head bias names. In 4.x the ViLT and FLAVA heads own a ``bias`` parameter that
  ``decoder.bias`` aliases, and ``save_pretrained`` writes ``<head>.bias``. 5.x writes
  ``<head>.decoder.bias`` (ViLT's head has no other bias; FLAVA ties ``<head>.bias`` to it). 4.57
  reading a 5.x checkpoint fills ``decoder.bias``, then its head re-ties ``decoder.bias`` to the
  never-filled ``<head>.bias``: that parameter stays on the meta device (``Cannot copy out of meta
  tensor`` at ``model.to(device)``) and no missing key is reported. 5.x reading a 4.x ViLT
  checkpoint reports ``<head>.bias`` unexpected and initialises ``decoder.bias`` afresh.
  :func:`plan_load` renames such a key to the name the installed line reads.
* Tied output embeddings. Whether the masked-LM decoder weight is tied to the word embeddings
  follows the config, and the lines read it differently: 4.x BridgeTower ties through its text
  config's default (and drops ``mlm_score.decoder.weight`` from the file) while 5.x reads the
  top-level ``tie_word_embeddings: false`` and keeps a separate weight; ViLT's default flipped
  from untied (4.x) to tied (5.x). 4.x ties unconditionally, overwriting a decoder weight the file
  holds. :func:`plan_load` decides from the checkpoint itself: a file without the decoder weight
  was saved tied (tie), a file with a decoder weight different from the embeddings was saved
  untied (do not tie).

Both rules are checked by tests/models/test_compat.py: every tensor of a checkpoint, written in either
layout, is loaded unchanged.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence


def _takes(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def _ordered_tokens(vocab: Mapping[str, int]) -> list[str]:
    """The tokens of a token -> id mapping in id order; ids must be exactly 0 .. n-1."""
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("a vocabulary's ids must be the integers 0 .. n-1, each used once")
    return tokens


def wordpiece_tokenizer(vocab: Mapping[str, int] | str | Path, **kwargs: Any):
    """A BERT WordPiece tokenizer from a vocabulary: a token -> id mapping or a ``vocab.txt``
    path (one token per line, ids in line order). ``kwargs`` go to the tokenizer class
    (``do_lower_case``, ``model_max_length``, special tokens)."""
    from transformers import BertTokenizer

    if _takes(BertTokenizer, "vocab"):  # 5.x: the vocabulary in memory, or a file path
        return BertTokenizer(vocab=dict(vocab) if isinstance(vocab, Mapping) else str(vocab), **kwargs)
    from transformers import BertTokenizerFast  # 4.x: the classes read a file

    if not isinstance(vocab, Mapping):
        return BertTokenizerFast(vocab_file=str(vocab), **kwargs)
    with tempfile.TemporaryDirectory(prefix="cptbench-vocab-") as tmp:
        path = Path(tmp) / "vocab.txt"
        path.write_text("".join(f"{tok}\n" for tok in _ordered_tokens(vocab)), encoding="utf-8")
        return BertTokenizerFast(vocab_file=str(path), **kwargs)  # holds the vocabulary in memory


def byte_bpe_tokenizer(vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], **kwargs: Any):
    """A byte-level BPE (RoBERTa) tokenizer from a token -> id mapping and the merge list in
    priority order. ``kwargs`` go to the tokenizer class (special tokens, ...)."""
    from transformers import RobertaTokenizer

    if _takes(RobertaTokenizer, "vocab") and _takes(RobertaTokenizer, "merges"):  # 5.x
        return RobertaTokenizer(vocab=dict(vocab), merges=list(merges), **kwargs)
    import json

    from transformers import RobertaTokenizerFast  # 4.x: vocab.json + merges.txt

    _ordered_tokens(vocab)
    with tempfile.TemporaryDirectory(prefix="cptbench-bpe-") as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(dict(vocab), ensure_ascii=False), encoding="utf-8")
        # the first line of merges.txt is a version header that the readers skip
        merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
        return RobertaTokenizerFast(vocab_file=str(vocab_file), merges_file=str(merges_file), **kwargs)



#: checkpoint files in the order ``from_pretrained`` prefers them
_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")


class Checkpoint:
    """The tensor names of a model's weight files (a local folder or a hub id, resolved the way
    ``from_pretrained`` does), and single tensors read on demand."""

    def __init__(self, path: str, files: dict[str, str]):
        self.path = path
        self._files = files  # tensor name -> local file

    @classmethod
    def find(cls, path: str, **hub_kwargs: Any) -> "Checkpoint | None":
        """None when the model has no weight file cptbench can read (``from_pretrained`` then
        reports the problem itself)."""
        import json

        local = Path(path).expanduser()

        def resolve(name: str) -> str | None:
            if local.is_dir():
                f = local / name
                return str(f) if f.is_file() else None
            from transformers.utils import cached_file

            return cached_file(path, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)

        for name in _WEIGHT_FILES:
            found = resolve(name)
            if found is None:
                continue
            if name.endswith(".index.json"):
                weight_map = json.loads(Path(found).read_text())["weight_map"]
                shards = {shard: resolve(shard) for shard in set(weight_map.values())}
                if any(f is None for f in shards.values()):
                    return None
                return cls(path, {key: shards[shard] for key, shard in weight_map.items()})
            return cls(path, {key: found for key in _tensor_names(found)})
        return None

    def keys(self) -> set[str]:
        """The names of every tensor in the checkpoint."""
        return set(self._files)

    def tensor(self, key: str):
        """The tensor ``key``, read from its file on the CPU."""
        file = self._files[key]
        if file.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(file, framework="pt") as f:
                return f.get_tensor(key)
        return _torch_file(file)[key]


def _torch_file(file: str) -> dict:
    import torch

    return torch.load(file, map_location="cpu", mmap=True, weights_only=True)


def _tensor_names(file: str) -> list[str]:
    if file.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(file, framework="pt") as f:
            return list(f.keys())
    return list(_torch_file(file))


def _dropped_tied_keys(model_cls) -> set[str]:
    """Names the installed line leaves out of a saved file because they alias another tensor:
    4.x lists them in ``_tied_weights_keys``; 5.x maps each (target) to its source."""
    tied = getattr(model_cls, "_tied_weights_keys", None) or ()
    return set(tied.keys() if isinstance(tied, Mapping) else tied)


def _module_name(model, module) -> str | None:
    for name, m in model.named_modules():
        if m is module:
            return name
    return None


def plan_load(model_cls, path: str, config, checkpoint: Checkpoint | None):
    """``(config, key_mapping)`` for ``model_cls.from_pretrained(path, config=config,
    key_mapping=key_mapping)`` so that every tensor of the checkpoint lands unchanged in the
    installed layout (see the module docstring). ``key_mapping`` is None when no key needs a new
    name. The config is changed in place (tying) and returned."""
    import re

    import torch

    if checkpoint is None:
        return config, None
    with torch.device("meta"):  # the installed layout: no memory, no initialisation cost
        skeleton = model_cls(config)
    installed = {n for n, _ in skeleton.named_parameters(remove_duplicate=False)}
    written = installed - _dropped_tied_keys(model_cls)  # what the installed line itself would save
    ckpt = checkpoint.keys()

    mapping: dict[str, str] = {}
    for head, module in skeleton.named_modules():
        if not isinstance(getattr(module, "decoder", None), torch.nn.Module):
            continue
        own, dec = f"{head}.bias", f"{head}.decoder.bias"
        for found, wanted in ((own, dec), (dec, own)):
            if found in ckpt and wanted not in ckpt and found not in written and wanted in written:
                mapping[rf"^{re.escape(found)}$"] = wanted

    out_emb = skeleton.get_output_embeddings()
    if out_emb is not None:
        out_key = f"{_module_name(skeleton, out_emb)}.weight"
        in_key = f"{_module_name(skeleton, skeleton.get_input_embeddings())}.weight"
        if out_key not in ckpt:
            tie = True  # saved tied: the decoder weight is the word embeddings
        elif in_key in ckpt and not torch.equal(checkpoint.tensor(out_key), checkpoint.tensor(in_key)):
            tie = False  # saved untied: keep the file's decoder weight
        else:
            tie = None
        if tie is not None:
            for cfg in {id(c): c for c in (config, config.get_text_config(decoder=True))}.values():
                cfg.tie_word_embeddings = tie
    del skeleton
    return config, (mapping or None)


def meta_tensors(model) -> list[str]:
    """Names of the parameters and buffers of ``model`` left on the meta device (never filled)."""
    found = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    found += [n for n, b in model.named_buffers(remove_duplicate=False) if b.is_meta]
    return found
