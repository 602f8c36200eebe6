"""Generative (image-text-to-text) vision-language models behind one small interface.

The methods that ask a generative model which painted colour or numbered mark an expression names
(``vlm-colour``, ``vlm-mark``) talk to a :class:`GenerativeAdapter`, never to model classes. An
adapter wraps one Hugging Face model with its tokenizer and image processor and offers:

* :meth:`~GenerativeAdapter.prepare_image`: the model-ready tensors of one uint8 RGB image and the
  number of tokens it takes in the text (:class:`PreparedImage`);
* :meth:`~GenerativeAdapter.encode`: a conversation (earlier turns with their answers, the last
  one asking) in the family's chat format, tokenised, each image placeholder expanded into its
  image tokens, with the position ids the model gives every token (:class:`Prompt`);
* :meth:`~GenerativeAdapter.answer_ids`: the token ids of an answer as it continues a prompt, its
  end-of-turn token included (so "1" and "12" are told apart);
* :meth:`~GenerativeAdapter.collate` (a left-padded batch of prompts, optionally followed by
  suffixes), :meth:`~GenerativeAdapter.continuation` (the batch that continues chosen rows of a
  prefix batch from its key-value cache), :meth:`~GenerativeAdapter.forward` (logits and the
  cache) and :meth:`~GenerativeAdapter.select_rows` (cache rows, repeated as needed);
* :meth:`~GenerativeAdapter.reference_inputs`: one full sequence whose positions the model works
  out itself (the brute-force check of the cached path).

Families (by the config's ``model_type``): ``llava`` (LLaVA-1.5, :mod:`cptbench.models.gen_llava`)
and ``qwen2_vl`` (Qwen2-VL, :mod:`cptbench.models.gen_qwen2vl`).
:func:`cptbench.models.gen_loading.load_generative` loads one;
:mod:`cptbench.models.tiny_generative` writes tiny random ones. transformers is imported only
inside functions and the family modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

@dataclass(frozen=True, eq=False)
class PreparedImage:
    """One image as the model takes it: ``tensors`` (the family's per-image tensors), the number of
    image tokens it fills in the text and their ``(t, h, w)`` layout (Qwen2-VL's positions)."""

    tensors: Mapping[str, Any]
    n_tokens: int
    grid: tuple[int, int, int] = (1, 1, 1)


@dataclass(frozen=True)
class Turn:
    """One user turn: an image, the question about it, and its answer (None: the turn asked now)."""

    image: PreparedImage
    question: str
    answer: str | None = None


@dataclass(frozen=True, eq=False)
class Prompt:
    """A tokenised conversation: ids with image tokens expanded, its images in order, and the
    position ids ``(R, L)`` the model gives each token (R = 1, or 3 for Qwen2-VL's M-RoPE)."""

    ids: tuple[int, ...]
    images: tuple[PreparedImage, ...]
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def next_position(self) -> int:
        """The position of the first token that continues the prompt."""
        return int(self.positions.max()) + 1 if len(self.ids) else 0


@dataclass
class Batch:
    """A left-padded batch of prompts (and suffixes): the model inputs, the attention mask and each
    row's next position (where a continuation starts)."""

    inputs: dict[str, Any]
    attention_mask: Any
    next_positions: list[int]


class GenerativeAdapter(ABC):
    """A generative vision-language model behind the interface of the module docstring."""

    #: the config ``model_type`` this adapter serves
    family: str = ""
    #: what introduces the assistant's answer (the end of every asking prompt)
    generation_tag: str = ""
    #: the text between the generation tag and the answer (a space for LLaVA)
    answer_prefix: str = ""

    def __init__(self, model, tokenizer, image_processor, model_name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.model_name = str(model_name)
        self._answers: dict[str, tuple[int, ...]] = {}
        self.answer_fallbacks = 0

    # -- family hooks ------------------------------------------------------------------------------
    @abstractmethod
    def prepare_image(self, image: np.ndarray) -> PreparedImage:
        """The model-ready tensors of one uint8 RGB image ``(H, W, 3)``."""

    @abstractmethod
    def render(self, turns: Sequence[Turn]) -> str:
        """The conversation as text in the family's chat format, one image placeholder per turn,
        ending with the generation tag when the last turn has no answer."""

    @abstractmethod
    def image_token_ids(self, image: PreparedImage) -> list[int]:
        """The ids one image placeholder expands into."""

    @abstractmethod
    def positions(self, ids: Sequence[int], images: Sequence[PreparedImage]) -> np.ndarray:
        """Position ids ``(R, L)`` of an unpadded, expanded sequence."""

    @abstractmethod
    def collate_images(self, images: Sequence[PreparedImage]) -> dict[str, Any]:
        """The image tensors of a batch whose rows hold ``images`` in row-major order."""

    @property
    @abstractmethod
    def placeholder_id(self) -> int:
        """The id of the one-token image placeholder in rendered text."""

    @property
    @abstractmethod
    def end_of_answer(self) -> str:
        """The token that ends an assistant turn (scored with every answer)."""

    def reference_extra(self, ids: Any) -> dict[str, Any]:
        """Inputs a family needs beside ids and images when the model computes positions itself."""
        return {}

    # -- shared ------------------------------------------------------------------------------------
    @property
    def device(self):
        """The device of the model's first parameter."""
        return next(self.model.parameters()).device

    @property
    def max_context(self) -> int:
        """The longest sequence the language model takes (its ``max_position_embeddings``)."""
        text = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        return int(getattr(text, "max_position_embeddings", 0) or 0) or 2048

    @property
    def pad_id(self) -> int:
        """The id padding positions hold (masked out; the pad token, else the end token, else 0)."""
        for tok in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if tok is not None:
                return int(tok)
        return 0

    def to(self, device) -> "GenerativeAdapter":
        """Move the model to ``device`` in place; returns the adapter."""
        self.model.to(device)
        return self

    def encode(self, turns: Sequence[Turn]) -> Prompt:
        """The tokenised conversation (module doc); placeholders in the rendered text that do not
        match the turns' images are refused."""
        images = tuple(t.image for t in turns)
        ids = self.tokenizer(self.render(turns))["input_ids"]
        placeholder = self.placeholder_id
        found = sum(1 for i in ids if i == placeholder)
        if found != len(images):
            raise ValueError(f"model {self.model_name!r}: the prompt holds {found} image placeholders for "
                             f"{len(images)} images (does an expression contain the image token?)")
        out: list[int] = []
        k = 0
        for i in ids:
            if i == placeholder:
                out.extend(self.image_token_ids(images[k]))
                k += 1
            else:
                out.append(int(i))
        return Prompt(tuple(out), images, self.positions(out, images))

    def answer_ids(self, answer: str) -> tuple[int, ...]:
        """The ids of ``answer`` continuing an asking prompt, the end-of-turn token included.

        Read as the tokens that follow the generation tag when tag and answer are tokenised together
        (as they are in a conversation); if that tokenisation does not start with the tag's own
        tokens, the answer is tokenised alone and counted in :attr:`answer_fallbacks`."""
        known = self._answers.get(answer)
        if known is not None:
            return known
        text = self.answer_prefix + answer + self.end_of_answer
        head = self.tokenizer(self.generation_tag, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(self.generation_tag + text, add_special_tokens=False)["input_ids"]
        if list(full[:len(head)]) == list(head) and len(full) > len(head):
            ids = tuple(int(i) for i in full[len(head):])
        else:
            self.answer_fallbacks += 1
            ids = tuple(int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"answer {answer!r} has no tokens for model {self.model_name!r}")
        self._answers[answer] = ids
        return ids

    def collate(self, prompts: Sequence[Prompt], suffixes: Sequence[Sequence[int]] | None = None) -> Batch:
        """A left-padded batch of ``prompts``, each followed by its suffix ids (answers being trained
        on), on the model's device."""
        import torch

        if not prompts:
            raise ValueError("collate needs at least one prompt")
        suffixes = [tuple(s) for s in suffixes] if suffixes is not None else [()] * len(prompts)
        if len(suffixes) != len(prompts):
            raise ValueError(f"got {len(suffixes)} suffixes for {len(prompts)} prompts")
        rows = len(prompts)
        length = max(len(p) + len(s) for p, s in zip(prompts, suffixes))
        axes = prompts[0].positions.shape[0]
        ids = np.full((rows, length), self.pad_id, dtype=np.int64)
        mask = np.zeros((rows, length), dtype=np.int64)
        pos = np.ones((axes, rows, length), dtype=np.int64)  # padding positions: 1, as generate() sets them
        nexts = []
        for r, (p, s) in enumerate(zip(prompts, suffixes)):
            n, m = len(p), len(s)
            start = length - n - m
            ids[r, start:start + n] = p.ids
            ids[r, start + n:] = s
            mask[r, start:] = 1
            pos[:, r, start:start + n] = p.positions
            pos[:, r, start + n:] = p.next_position + np.arange(m)
            nexts.append(p.next_position + m)
        device = self.device
        inputs = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device),
                  "position_ids": torch.from_numpy(pos[0] if axes == 1 else pos).to(device)}
        images = [im for p in prompts for im in p.images]
        if images:
            inputs.update({k: v.to(device) for k, v in self.collate_images(images).items()})
        return Batch(inputs, inputs["attention_mask"], nexts)

    def continuation(self, batch: Batch, rows: Sequence[int], suffixes: Sequence[Sequence[int]]) -> dict[str, Any]:
        """Inputs that continue row ``rows[j]`` of ``batch`` with ``suffixes[j]`` (right-padded) from
        the batch's cache once :meth:`select_rows` has picked those rows."""
        import torch

        if len(rows) != len(suffixes) or not rows:
            raise ValueError(f"continuation needs one suffix per row, got {len(rows)} rows and {len(suffixes)} suffixes")
        length = max(len(s) for s in suffixes)
        axes = 3 if batch.inputs["position_ids"].dim() == 3 else 1
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        pos = np.ones((axes, len(rows), length), dtype=np.int64)
        for j, (r, s) in enumerate(zip(rows, suffixes)):
            ids[j, :len(s)] = s
            mask[j, :len(s)] = 1
            pos[:, j, :] = batch.next_positions[r] + np.arange(length)
        device = self.device
        index = torch.as_tensor(list(rows), device=batch.attention_mask.device)
        return {"input_ids": torch.from_numpy(ids).to(device),
                "attention_mask": torch.cat([batch.attention_mask.index_select(0, index),
                                             torch.from_numpy(mask).to(device)], dim=1),
                "position_ids": torch.from_numpy(pos[0] if axes == 1 else pos).to(device)}

    def hidden(self, inputs: Mapping[str, Any], cache: Any = None, use_cache: bool = True):
        """``(hidden, cache)``: the language model's final hidden states ``(B, L, H)`` over
        ``inputs`` (continuing ``cache`` when given) and the updated cache (None without ``use_cache``)."""
        from cptbench.models.gen_compat import cache_argument, output_cache

        base = self.model.model
        kwargs = dict(inputs)
        if cache is not None:
            kwargs[cache_argument(base)] = cache
        out = base(**kwargs, use_cache=use_cache)
        return out.last_hidden_state, (output_cache(out) if use_cache else None)

    def forward(self, inputs: Mapping[str, Any], cache: Any = None, last_only: bool = False):
        """``(logits, cache)``: vocabulary logits ``(B, L, V)`` (``(B, 1, V)`` with ``last_only``) of
        the language model over ``inputs``, continuing ``cache`` when given, and the updated cache."""
        hidden, cache = self.hidden(inputs, cache)
        if last_only:
            hidden = hidden[:, -1:]
        return self.model.lm_head(hidden), cache

    @staticmethod
    def select_rows(cache: Any, rows: Sequence[int]) -> Any:
        """The cache with its batch rows replaced by ``rows`` (repeats allowed), in place."""
        import torch

        index = torch.as_tensor(list(rows), dtype=torch.long)
        cache.batch_select_indices(index)
        return cache

    def reference_inputs(self, prompt: Prompt, suffix: Sequence[int]) -> dict[str, Any]:
        """One unpadded sequence, ``prompt`` followed by ``suffix``, without position ids (the model
        computes them): the brute-force check of the cached path."""
        import torch

        device = self.device
        ids = torch.tensor([list(prompt.ids) + list(suffix)], dtype=torch.long, device=device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if prompt.images:
            inputs.update({k: v.to(device) for k, v in self.collate_images(prompt.images).items()})
        inputs.update(self.reference_extra(ids))
        return inputs
