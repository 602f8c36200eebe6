"""The options of the CPT methods (``cpt-blk``, ``cpt-seg``): :class:`CptConfig`, every value checked
when the config is built, so a bad option fails before a model is loaded.

The defaults are the release's (docs/protocol.md "faithful default vs variant"); the pipeline and
precision options are the evaluation path's (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cptbench.cpt.painting import DEFAULT_ALPHA, DEFAULT_BOX_PIXELS, check_box_pixels
from cptbench.cpt.palettes import canonical_palette
from cptbench.cpt.pipeline import PIPELINES
from cptbench.cpt.prompts import TEMPLATES
from cptbench.cpt.score_rules import SCORE_RULES
from cptbench.cpt.training import NO_POSITIVE_RULES, POSITIVE_RULES, check_pass_rules
from cptbench.methods.numerics import check_precision
from cptbench.methods.optim import DEFAULT_SEED_POLICY, check_seed_policy


@dataclass(frozen=True)
class CptConfig:
    """Options of ``cpt-blk`` / ``cpt-seg`` (``--set key=value``), each checked on construction.

    ``palette`` holds a name, an inline spec or, for a palette file, the file's canonical form
    (``file:<name>@<sha256 prefix>;word:r,g,b;...``): the file is read here, when the option is
    parsed, so the config (and every run id hashed from it) depends on the file's name and content,
    never on its path (:mod:`cptbench.cpt.palettes`)."""

    template: int = 3
    palette: str = "red"
    alpha: float = DEFAULT_ALPHA
    score: str = "auto"
    steps: int = 500
    lr: float = 3e-5
    batch_size: int = 0  # 0: k training expressions, capped at 16
    weight_decay: float = 0.01
    warmup: float = 0.1
    model_seed: int = 88
    save_weights: bool = False
    category_segment: bool = False
    # docs/protocol.md "faithful default vs variant": the release's rule first, today's as options
    seed_policy: str = DEFAULT_SEED_POLICY  # release | per-run
    box_pixels: str = DEFAULT_BOX_PIXELS  # release | cover
    positives: str = POSITIVE_RULES[0]  # release (one positive at 16 shots) | all
    no_positive: str = NO_POSITIVE_RULES[0]  # release (two passes) | one
    # docs/performance.md: how painted copies are built and the forward's numerics
    pipeline: str = "device"  # device (tensor ops on the model's device) | reference (host path, exact)
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise ValueError(message)

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        need(is_int(self.template) and self.template in TEMPLATES,
             f"template must be one of {sorted(TEMPLATES)} (1: '<q> is [MASK].', 2: '<q> is [MASK] color.', "
             f"3: '<q> is in [MASK] color.'), got {self.template!r}")
        need(is_num(self.alpha) and 0.0 < float(self.alpha) <= 1.0, f"alpha must be in (0, 1], got {self.alpha!r}")
        # a ValueError naming the choices; a palette file becomes its canonical, path-free value
        object.__setattr__(self, "palette", canonical_palette(self.palette, alpha=float(self.alpha)))
        need(self.score in SCORE_RULES, f"score must be one of {', '.join(SCORE_RULES)}, got {self.score!r}")
        need(is_int(self.steps) and self.steps >= 0, f"steps must be an integer >= 0, got {self.steps!r}")
        need(is_num(self.lr) and float(self.lr) > 0, f"lr must be > 0, got {self.lr!r}")
        need(is_int(self.batch_size) and self.batch_size >= 0,
             f"batch_size must be an integer >= 0 (0 = k, capped at 16), got {self.batch_size!r}")
        need(is_num(self.weight_decay) and float(self.weight_decay) >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(is_num(self.warmup) and 0.0 <= float(self.warmup) <= 1.0, f"warmup must be a fraction in [0, 1], got {self.warmup!r}")
        need(is_int(self.model_seed), f"model_seed must be an integer, got {self.model_seed!r}")
        need(isinstance(self.save_weights, bool), f"save_weights must be true or false, got {self.save_weights!r}")
        need(isinstance(self.category_segment, bool), f"category_segment must be true or false, got {self.category_segment!r}")
        check_seed_policy(self.seed_policy)
        check_box_pixels(self.box_pixels)
        check_pass_rules(self.positives, self.no_positive)
        need(self.pipeline in PIPELINES, f"pipeline must be one of {', '.join(PIPELINES)} (device: painting and "
             f"preprocessing as tensor ops on the model's device; reference: the host path), got {self.pipeline!r}")
        check_precision(self.precision)
