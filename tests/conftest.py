import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent / "helpers"))  # test helpers (refer_fixture, cpt_fakes, ...) importable


# ---- BEGIN tiny-model fixtures (cptbench.models adapters; owner: adapters) -----------------------
import pytest  # noqa: E402

#: words the tiny test models know as single tokens (besides colour words, "none" and template words)
TINY_MODEL_WORDS = ("man", "woman", "dog", "cat", "shirt", "left", "right", "red", "car", "table", "chair")


def _built_once(tmp_path_factory, build, prefix: str, default_size: int):
    """A session factory ``make(kind, image_size=default_size, seed=0) -> Path``: the folder written
    by ``build(kind, folder, image_size=..., seed=...)``, built once per arguments."""
    built = {}

    def make(kind: str, image_size: int = default_size, seed: int = 0):
        key = (kind, image_size, seed)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"{prefix}{kind}-{image_size}-{seed}")
            built[key] = build(kind, folder, image_size=image_size, seed=seed)
        return built[key]

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: ``tiny_model_dir(kind, image_size=32, seed=0) -> Path`` of a tiny random model folder
    (kind: vilt | flava | bridgetower), built once per session and loadable with
    ``cptbench.models.loading.load_adapter(str(path))``. Treat the folder as read-only."""
    from cptbench.models.tiny import build_tiny_model

    return _built_once(tmp_path_factory, lambda kind, folder, **kw: build_tiny_model(kind, folder, TINY_MODEL_WORDS, **kw),
                       "tiny-", 32)


@pytest.fixture(scope="session")
def tiny_vilt_dir(tiny_model_dir):
    return tiny_model_dir("vilt")


@pytest.fixture(scope="session")
def tiny_flava_dir(tiny_model_dir):
    return tiny_model_dir("flava")


@pytest.fixture(scope="session")
def tiny_bridgetower_dir(tiny_model_dir):
    return tiny_model_dir("bridgetower")
# ---- END tiny-model fixtures ----------------------------------------------------------------------


# ---- BEGIN tiny dual-encoder fixtures (cptbench.models.dual_*; owner: visual-prompt methods) -----
@pytest.fixture(scope="session")
def tiny_dual_dir(tmp_path_factory):
    """Factory: ``tiny_dual_dir(kind, image_size=32, seed=0) -> Path`` of a tiny random dual-encoder
    folder (kind: clip | blip), built once per session, loadable with
    ``cptbench.models.dual_encoder.load_dual_encoder(str(path))``. Treat the folder as read-only."""
    from cptbench.models.tiny_dual import build_tiny_dual_model

    return _built_once(tmp_path_factory,
                       lambda kind, folder, **kw: build_tiny_dual_model(kind, folder, TINY_MODEL_WORDS, **kw), "tiny-", 32)
# ---- END tiny dual-encoder fixtures ---------------------------------------------------------------


@pytest.fixture(scope="session")
def synthref_cache(tmp_path_factory):
    """A session-wide synthref cache folder (generated once, ~1 s)."""
    return tmp_path_factory.mktemp("cptbench-cache")


# ---- BEGIN tiny generative-model fixtures (cptbench.models.generative; owner: vlm prompting) ---------
@pytest.fixture(scope="session")
def tiny_generative_dir(tmp_path_factory):
    """Factory: ``tiny_generative_dir(kind, image_size=64, seed=0) -> Path`` of a tiny random
    generative model folder (kind: llava | qwen2_vl), built once per session and loadable with
    ``cptbench.models.generative.load_generative(str(path))``. Treat the folder as read-only."""
    from cptbench.models.tiny_generative import build_tiny_generative

    return _built_once(tmp_path_factory, build_tiny_generative, "tiny-gen-", 64)
# ---- END tiny generative-model fixtures ------------------------------------------------------------
