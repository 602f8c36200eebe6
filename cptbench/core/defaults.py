"""The shared defaults of the CLI, the Python API and study files (one place, so they cannot drift)."""

from __future__ import annotations

#: seeds of a k-shot study: 5 different training subsets per k (the paper's protocol)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: the task run when none is named: the bundled offline benchmark
DEFAULT_TASK = "synthref"
#: the method run when none is named
DEFAULT_METHOD = "cpt"
#: k when none is given
DEFAULT_SHOTS: tuple[int, ...] = (1,)
#: forward passes per evaluation batch (``--batch-size``), unless ``auto``
EVAL_BATCH_SIZE = 32
#: predictions are saved every this many expressions: what a kill can lose at most
CHUNK_SIZE = 64
#: the environment variable naming the refer-layout data root (``--data-root``)
DATA_ROOT_ENV = "CPTBENCH_DATA_ROOT"
#: the torch device when none is given
DEFAULT_DEVICE = "cpu"
