"""transformers 4.57 / 5.x: tokenizers built either way, and checkpoints of either line's layout
loaded with every tensor unchanged (cptbench.models.compat; docs/compat.md).

The "other line's layout" cases rewrite a checkpoint the way the other line writes it (observed
with 4.57.6 and 5.24.0 saves of the same tiny models): the head bias under ``<head>.bias`` vs
``<head>.decoder.bias``, and BridgeTower's decoder weight dropped (saved tied) vs kept (untied).
The bundled model was written by 5.24, so in the 4.57 CI environment (.ci/run-min) its test is the
real cross-line case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cptbench.models import compat
from cptbench.models.loading import check_all_filled, load_adapter, resolve_model_path


def _randomise(folder: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    """Give every tensor of ``folder``'s checkpoint distinct random values (fresh models have zero
    biases and unit LayerNorms, which would load "equal" by accident); return them."""
    from safetensors.torch import load_file, save_file

    file = folder / "model.safetensors"
    gen = torch.Generator().manual_seed(seed)
    tensors = {k: torch.randn(v.shape, generator=gen).to(v.dtype) if v.is_floating_point() else v
               for k, v in sorted(load_file(str(file)).items())}
    save_file(tensors, str(file), metadata={"format": "pt"})
    return tensors


def _save(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _other_bias_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The head biases under the other line's name: ``H.decoder.bias`` <-> ``H.bias``."""
    out = {}
    for key, value in tensors.items():
        if key.endswith(".decoder.bias"):
            key = key[: -len(".decoder.bias")] + ".bias"
        elif key.endswith(".bias") and key[: -len(".bias")] + ".decoder.weight" in tensors:
            key = key[: -len(".bias")] + ".decoder.bias"
        out[key] = value
    return out


def _loaded_value(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """The model's tensor for checkpoint ``key``, under either line's name for a head bias."""
    for name in (key, key.replace(".decoder.bias", ".bias"), key[: -len(".bias")] + ".decoder.bias"):
        if name in state:
            return state[name]
    raise AssertionError(f"checkpoint tensor {key} has no place in the loaded model")


def assert_loads_unchanged(folder: Path, tensors: dict[str, torch.Tensor], tied: tuple[str, str] | None = None):
    """Every checkpoint tensor is in the loaded model unchanged, every model parameter came from
    the checkpoint, and ``tied`` = (decoder weight, embeddings) absent from the file is the embeddings."""
    model = load_adapter(str(folder)).model
    state = {k: v.detach() for k, v in model.state_dict().items()}
    for key, value in tensors.items():
        assert torch.equal(_loaded_value(state, key), value), f"{key} differs from the file"
    own = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False))}
    filled = {id(_loaded_value(own, k)) for k in tensors}
    if tied is not None:
        decoder, embeddings = tied
        assert decoder not in tensors
        assert torch.equal(state[decoder], tensors[embeddings])
        filled.add(id(model.get_parameter(decoder)))
    unfilled = [n for n, p in model.named_parameters() if id(p) not in filled]
    assert not unfilled, f"parameters not from the file: {unfilled}"
    return model


@pytest.mark.parametrize("kind", ["vilt", "flava", "bridgetower"])
def test_weights_round_trip_unchanged(kind, tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir(kind), tmp_path / kind)
    assert_loads_unchanged(folder, _randomise(folder))


@pytest.mark.parametrize("kind", ["vilt", "flava"])
def test_head_bias_under_the_other_lines_name_loads(kind, tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir(kind), tmp_path / kind)
    written = _randomise(folder)
    tensors = _other_bias_names(written)
    assert tensors.keys() != written.keys()  # the rename did something
    _save(folder, tensors)
    assert_loads_unchanged(folder, tensors)


def test_bridgetower_decoder_saved_tied_or_untied_loads(tiny_model_dir, tmp_path):
    decoder, embeddings = "mlm_score.decoder.weight", "bridgetower.text_model.embeddings.word_embeddings.weight"
    tied = _copy(tiny_model_dir("bridgetower"), tmp_path / "tied")
    tensors = _randomise(tied)
    tensors.pop(decoder, None)  # 4.x writes a tied decoder weight as the embeddings alone
    _save(tied, tensors)
    model = assert_loads_unchanged(tied, tensors, tied=(decoder, embeddings))
    untied = _copy(tiny_model_dir("bridgetower"), tmp_path / "untied")
    tensors = _randomise(untied, seed=2)
    tensors[decoder] = torch.randn(tensors[embeddings].shape, generator=torch.Generator().manual_seed(3))
    _save(untied, tensors)  # 5.x writes its own decoder weight
    assert json.loads((untied / "config.json").read_text()).get("tie_word_embeddings") is not True
    model = assert_loads_unchanged(untied, tensors)
    assert model.get_parameter(decoder) is not model.get_parameter(embeddings)


def test_bundled_model_loads_unchanged():
    """The bundled model was written by transformers 5.24 (head bias as ``mlm_score.decoder.bias``,
    decoder weight tied): read by 4.57 this was ``Cannot copy out of meta tensor``."""
    from safetensors.torch import load_file

    folder = Path(resolve_model_path("bundled:mini-vilt"))
    tensors = load_file(str(folder / "model.safetensors"))
    assert "mlm_score.decoder.bias" in tensors and "mlm_score.decoder.weight" not in tensors
    assert_loads_unchanged(folder, tensors, tied=("mlm_score.decoder.weight",
                                                  "vilt.embeddings.text_embeddings.word_embeddings.weight"))


def test_a_tensor_left_on_meta_is_refused():
    from cptbench.core.errors import ModelError

    with torch.device("meta"):
        model = torch.nn.Linear(2, 2)
    with pytest.raises(ModelError, match=r"2 tensor\(s\) were not filled.*weight, bias"):
        check_all_filled("some/model", model)


# ------------------------------------------------------------------------------------ tokenizers
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "man", "is", "in", "red", "color", "straw", "##berry"]


def test_wordpiece_tokenizer_from_a_mapping_or_a_file(tmp_path):
    """Both give the whole vocabulary (5.x's BertTokenizerFast(vocab_file=...) silently made a
    5-token one) and the same ids."""
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("".join(w + "\n" for w in WORDS))
    from_map = compat.wordpiece_tokenizer({w: i for i, w in enumerate(WORDS)}, do_lower_case=True, model_max_length=12)
    from_file = compat.wordpiece_tokenizer(vocab_file, do_lower_case=True, model_max_length=12)
    for tok in (from_map, from_file):
        assert len(tok) == len(WORDS) and tok.model_max_length == 12 and tok.is_fast
        assert tok("The man is in [MASK] color strawberry")["input_ids"] == [2, 5, 6, 7, 8, 4, 10, 11, 12, 3]
        assert tok.mask_token_id == 4 and tok.pad_token_id == 0


def test_wordpiece_tokenizer_refuses_gaps_in_ids():
    with pytest.raises(ValueError, match="0 .. n-1"):
        compat._ordered_tokens({"[PAD]": 0, "[UNK]": 2})


def test_byte_bpe_tokenizer_merges_a_spaced_word():
    from transformers import AddedToken

    from cptbench.models.tiny import _bpe_vocab_and_merges

    vocab, merges = _bpe_vocab_and_merges(["dog"])
    tok = compat.byte_bpe_tokenizer(vocab, merges, mask_token=AddedToken("<mask>", lstrip=True, rstrip=False))
    assert len(tok) == len(vocab)
    ids = tok("the dog is red <mask>")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "the", "Ġdog", "Ġis", "Ġred", "<mask>", "</s>"]
