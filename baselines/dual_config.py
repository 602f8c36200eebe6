"""The options of the visual-prompt methods (``--set key=value``, or scoped ``--set
clip-blur.blur_radius=50``), one frozen dataclass per method so that each method has only the
options that change it. Every default is a published choice; the comment beside it names the
source (:mod:`cptbench_baselines.visual_prompts` and the README's section on these methods give
the details).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cptbench.methods.numerics import check_precision

from cptbench_baselines.visual_prompts import (RECLIP_BLUR_RADIUS, RECLIP_BOX_PADDING, RED_CIRCLE_RGB,
                                               RED_CIRCLE_THICKNESS, parse_rgb)

#: similarity the prompts are scored with: ``itc`` (the embeddings' cosine, every model) or
#: ``itm`` (BLIP's image-text matching head, pairs scored jointly)
SCORES = ("itc", "itm")
#: few-shot adaptation on the frozen model: ``linear`` (a weight per similarity feature, starting
#: at the model's temperature), ``temperature`` (one learned scale: changes calibration, never the
#: ranking), ``none`` (zero-shot scores at every k)
HEADS = ("linear", "temperature", "none")
#: ReCLIP's text for its crop and blur representations (``"a photo of " + expression.lower()``),
#: also FGVP's ``--text_prompt`` default in its Red Circle runs
PHOTO_TEMPLATE = "a photo of {q}"
#: ReCLIP's text for its ``shade`` representation, the CPT-adapted baseline
RED_TEMPLATE = "{q} is in red color."
#: CPT's red: the release's RefCOCO colour and ReCLIP's ``TINT_COLOR``
CPT_RED = "240,0,30"
#: CPT's alpha: the release's 127/255 (ReCLIP composites its tint at alpha 127 of 255)
CPT_ALPHA = 127 / 255


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class DualConfig:
    """Options every visual-prompt method has."""

    template: str = PHOTO_TEMPLATE  # the text; {q} = the expression lower-cased (ReCLIP lower-cases)
    square: bool = True  # stretch each prompt image to the model's square input (ReCLIP's square_size default)
    score: str = SCORES[0]  # itc | itm (BLIP only)
    head: str = HEADS[0]  # few-shot adaptation: linear | temperature | none
    l2: float = 1.0  # weight of the squared relative change of the head's weights (not tuned on any split)
    iterations: int = 100  # L-BFGS iterations of a few-shot fit at most
    precision: str = "auto"  # the run's numerics: auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16

    def __post_init__(self):
        checks = [
            (isinstance(self.template, str) and self.template.count("{q}") == 1,
             f"template must hold the expression's place '{{q}}' exactly once, got {self.template!r}"),
            (isinstance(self.square, bool), f"square must be true or false, got {self.square!r}"),
            (self.score in SCORES, f"score must be one of {', '.join(SCORES)} (itc: embedding cosine; itm: BLIP's "
                                   f"image-text matching head), got {self.score!r}"),
            (self.head in HEADS, f"head must be one of {', '.join(HEADS)}, got {self.head!r}"),
            (_number(self.l2) and self.l2 >= 0, f"l2 must be a number >= 0, got {self.l2!r}"),
            (isinstance(self.iterations, int) and not isinstance(self.iterations, bool) and self.iterations >= 1,
             f"iterations must be an integer >= 1, got {self.iterations!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        try:
            self.template.format(q="x")
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(f"template {self.template!r}: only '{{q}}' may be in braces ({exc})") from None
        check_precision(self.precision)

    def prompt_params(self) -> dict[str, Any]:
        """The prompt's own options (for records)."""
        return {}


def _check_padding(value: Any) -> None:
    if not (_number(value) and value >= 0):
        raise ValueError(f"box_padding must be a number of pixels >= 0, got {value!r}")


def _check_radius(value: Any) -> None:
    if not (_number(value) and value > 0):
        raise ValueError(f"blur_radius must be a number of pixels > 0, got {value!r}")


@dataclass(frozen=True)
class CropConfig(DualConfig):
    """Options of ``clip-crop``."""

    box_padding: float = RECLIP_BOX_PADDING  # px around the box before cropping (ReCLIP's --enlarge_boxes, 0)

    def __post_init__(self):
        super().__post_init__()
        _check_padding(self.box_padding)

    def prompt_params(self) -> dict[str, Any]:
        """The box padding."""
        return {"box_padding": self.box_padding}


@dataclass(frozen=True)
class BlurConfig(DualConfig):
    """Options of ``clip-blur``."""

    blur_radius: float = RECLIP_BLUR_RADIUS  # Gaussian radius = std dev in px (ReCLIP's --blur_std_dev, 100)
    box_padding: float = RECLIP_BOX_PADDING  # px around the box kept sharp (ReCLIP's --enlarge_boxes, 0)

    def __post_init__(self):
        super().__post_init__()
        _check_radius(self.blur_radius)
        _check_padding(self.box_padding)

    def prompt_params(self) -> dict[str, Any]:
        """The blur radius and box padding."""
        return {"blur_radius": self.blur_radius, "box_padding": self.box_padding}


@dataclass(frozen=True)
class ReclipConfig(BlurConfig):
    """Options of ``reclip`` (crop and blur, ReCLIP's default ``--box_representation_method crop,blur``):
    the padding applies to both, as ReCLIP's ``--enlarge_boxes`` does."""


@dataclass(frozen=True)
class CircleConfig(DualConfig):
    """Options of ``clip-circle``."""

    ellipse_thickness: int = RED_CIRCLE_THICKNESS  # px at the model's input (FGVP's Red Circle runs: --thickness 2)
    ellipse_color: str = ",".join(map(str, RED_CIRCLE_RGB))  # r,g,b (FGVP's Red Circle runs: --color_line red)

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.ellipse_thickness, int) and not isinstance(self.ellipse_thickness, bool)
                and self.ellipse_thickness >= 1):
            raise ValueError(f"ellipse_thickness must be an integer >= 1 (pixels), got {self.ellipse_thickness!r}")
        parse_rgb(self.ellipse_color)

    def prompt_params(self) -> dict[str, Any]:
        """The ellipse's thickness and colour."""
        return {"ellipse_thickness": self.ellipse_thickness, "ellipse_color": list(parse_rgb(self.ellipse_color))}


@dataclass(frozen=True)
class CptShadeConfig(DualConfig):
    """Options of ``clip-cpt`` (ReCLIP's CPT-adapted baseline: CPT's red block, "<q> is in red color.")."""

    template: str = RED_TEMPLATE  # ReCLIP's shade text
    shade_color: str = CPT_RED  # r,g,b (CPT's red (240, 0, 30) = ReCLIP's TINT_COLOR)
    shade_alpha: float = CPT_ALPHA  # CPT's alpha 127/255
    box_pixels: str = "release"  # CPT's box pixel rule (cptbench.cpt.painting): release | cover

    def __post_init__(self):
        super().__post_init__()
        parse_rgb(self.shade_color)
        if not (_number(self.shade_alpha) and 0 < self.shade_alpha <= 1):
            raise ValueError(f"shade_alpha must be in (0, 1], got {self.shade_alpha!r}")
        if self.box_pixels not in ("release", "cover"):
            raise ValueError(f"box_pixels must be release or cover (cptbench.cpt.painting), got {self.box_pixels!r}")

    def prompt_params(self) -> dict[str, Any]:
        """The shade's colour, alpha and box pixel rule."""
        return {"shade_color": list(parse_rgb(self.shade_color)), "shade_alpha": self.shade_alpha,
                "box_pixels": self.box_pixels}
