"""The options of the generative prompting methods ``vlm-colour`` and ``vlm-mark`` (``--set
key=value``) and their checks; :mod:`cptbench_baselines.vlm_prompting` explains what each does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cptbench.methods.numerics import check_precision
from cptbench.methods.optim import DEFAULT_SEED_POLICY, MAX_BATCH, check_seed_policy

from .vlm_regions import MARK_POSITIONS, parse_palette

#: how k > 0 training expressions are used (the first is the default)
FEWSHOT_MODES = ("icl", "lora", "none")
#: how a candidate's answer tokens become its score
SCORE_RULES = ("sum", "mean")

COLOUR_TEMPLATES = {
    "1": 'The regions in this image are painted in different colors. Which color is the region described by '
         '"{expression}"? Answer with the color name only.',
    "2": "{expression} is in which color?",
}
MARK_TEMPLATES = {
    "1": 'The regions in this image are marked with numbers. Which number marks the region described by '
         '"{expression}"? Answer with the number only.',
    "2": "{expression} is marked with which number?",
}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def template_text(template: str, templates: dict[str, str]) -> str:
    """The question text of ``template``: a numbered template, or the option's own text, which must
    hold ``{expression}`` exactly once (and no other braces)."""
    if template in templates:
        return templates[template]
    if not isinstance(template, str) or template.count("{expression}") != 1 or \
            template.replace("{expression}", "").count("{") or template.replace("{expression}", "").count("}"):
        raise ValueError(f"template must be one of {', '.join(sorted(templates))} or a text holding '{{expression}}' "
                         f"once (and no other braces), got {template!r}")
    return template


@dataclass(frozen=True)
class VlmConfig:
    """Options shared by ``vlm-colour`` and ``vlm-mark`` (module doc of vlm_prompting)."""

    template: str = "1"  # 1 | 2 | a question holding {expression}
    fewshot: str = FEWSHOT_MODES[0]  # icl: training expressions as earlier turns | lora | none
    icl_examples: int = 0  # in-context turns at most (0 = every training expression that fits)
    max_context: int = 0  # tokens a prompt may take (0 = the model's max_position_embeddings)
    score: str = SCORE_RULES[0]  # sum: summed answer log-likelihood | mean: per answer token
    kv_cache: bool = True  # one prefix forward per prompt, answers from its cache | false: one forward per answer
    steps: int = 500  # lora: optimizer steps
    lr: float = 1e-4  # lora: learning rate of the adapters
    batch_size: int = 0  # lora: expressions per step (0 = k capped at 16)
    weight_decay: float = 0.01
    warmup: float = 0.1
    model_seed: int = 88  # lora: adapter init and training randomness under seed_policy=release
    seed_policy: str = DEFAULT_SEED_POLICY
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: str = "q_proj,v_proj"  # projections of the language model that get adapters
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16

    def __post_init__(self):
        if _int(self.template):  # a number from a config file names a numbered template
            object.__setattr__(self, "template", str(self.template))
        checks = [
            (self.fewshot in FEWSHOT_MODES, f"fewshot must be one of {', '.join(FEWSHOT_MODES)} (icl: the training "
                                            f"expressions as earlier turns; lora: LoRA adapters trained on them; none: "
                                            f"zero-shot at every k), got {self.fewshot!r}"),
            (_int(self.icl_examples) and self.icl_examples >= 0, f"icl_examples must be an integer >= 0, got {self.icl_examples!r}"),
            (_int(self.max_context) and self.max_context >= 0, f"max_context must be an integer >= 0, got {self.max_context!r}"),
            (self.score in SCORE_RULES, f"score must be one of {', '.join(SCORE_RULES)}, got {self.score!r}"),
            (isinstance(self.kv_cache, bool), f"kv_cache must be true or false, got {self.kv_cache!r}"),
            (_int(self.steps) and self.steps >= 0, f"steps must be an integer >= 0, got {self.steps!r}"),
            (_number(self.lr) and self.lr > 0, f"lr must be > 0, got {self.lr!r}"),
            (_int(self.batch_size) and self.batch_size >= 0,
             f"batch_size must be an integer >= 0 (0 = k capped at {MAX_BATCH}), got {self.batch_size!r}"),
            (_number(self.weight_decay) and self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}"),
            (_number(self.warmup) and 0 <= self.warmup <= 1, f"warmup must be a fraction in [0, 1], got {self.warmup!r}"),
            (_int(self.model_seed), f"model_seed must be an integer, got {self.model_seed!r}"),
            (_int(self.lora_r) and self.lora_r >= 1, f"lora_r must be an integer >= 1, got {self.lora_r!r}"),
            (_number(self.lora_alpha) and self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha!r}"),
            (_number(self.lora_dropout) and 0 <= self.lora_dropout < 1,
             f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}"),
            (isinstance(self.lora_targets, str) and all(t.strip().isidentifier() for t in self.lora_targets.split(",")),
             f"lora_targets must be comma-separated module names (e.g. q_proj,v_proj), got {self.lora_targets!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_seed_policy(self.seed_policy)
        check_precision(self.precision)
        template_text(self.template, self.templates())

    @classmethod
    def templates(cls) -> dict[str, str]:
        """The numbered question templates of the method."""
        return COLOUR_TEMPLATES

    @property
    def question(self) -> str:
        """The question text with ``{expression}`` to fill."""
        return template_text(self.template, self.templates())

    @property
    def targets(self) -> tuple[str, ...]:
        """The LoRA target module names."""
        return tuple(t.strip() for t in self.lora_targets.split(","))


@dataclass(frozen=True)
class ColourConfig(VlmConfig):
    """Options of ``vlm-colour``: the shared ones and CPT's painting (palette, alpha)."""

    palette: str = "release5"  # red | release5 | word:r,g,b;...
    alpha: float = 127 / 255

    def __post_init__(self):
        super().__post_init__()
        parse_palette(self.palette)
        if not (_number(self.alpha) and 0 < self.alpha <= 1):
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha!r}")


@dataclass(frozen=True)
class MarkConfig(VlmConfig):
    """Options of ``vlm-mark``: the shared ones and the marks (how many per image, where, outline, size)."""

    marks_per_image: int = 0  # candidates numbered on one image (0 = all, as Set-of-Mark)
    mark_position: str = MARK_POSITIONS[0]  # center | corner
    outline: bool = True  # draw each box's border in its mark's colour
    mark_scale: int = 0  # digit scale in pixels per font pixel (0 = from the image size)

    def __post_init__(self):
        super().__post_init__()
        checks = [
            (_int(self.marks_per_image) and self.marks_per_image >= 0,
             f"marks_per_image must be an integer >= 0 (0 = all), got {self.marks_per_image!r}"),
            (self.mark_position in MARK_POSITIONS,
             f"mark_position must be one of {', '.join(MARK_POSITIONS)}, got {self.mark_position!r}"),
            (isinstance(self.outline, bool), f"outline must be true or false, got {self.outline!r}"),
            (_int(self.mark_scale) and self.mark_scale >= 0, f"mark_scale must be an integer >= 0, got {self.mark_scale!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def templates(cls) -> dict[str, str]:
        """The numbered question templates of ``vlm-mark``."""
        return MARK_TEMPLATES
