"""Runs the cptbench CLI with a fast, deterministic trained test method registered (fault tests).

``fake-trainer`` trains (its scores depend on the k-shot draw), reports fit facts through
``describe()``, per-example counts through ``take_counters()`` and a volatile call count through
``perf_info()``: everything a resumed record must reproduce, without a model.
"""

import sys

from cptbench.methods import Method
from cptbench.methods.registry import method_registry
from cptbench.data.sampling import rng_for


class FakeTrainer(Method):
    trains = True

    def fit(self, train, seed):
        self.ids = sorted(t.example.example_id for t in train)
        self.calls = 0

    def predict(self, examples):
        self.calls += 1
        self.n = getattr(self, "n", 0) + len(examples)
        return [rng_for("fake", *self.ids, ex.example_id).random(ex.n_candidates) for ex in examples]

    def describe(self):
        return {"train_ids": self.ids, "train_steps": 3 * len(self.ids), "seed_policy": "release"}

    def take_counters(self):
        n, self.n = getattr(self, "n", 0), 0
        return {"expressions": n, "passes": {"total": 2 * n}}

    def perf_info(self):
        return {"predict_calls": getattr(self, "calls", 0)}


method_registry().add("fake-trainer", lambda: FakeTrainer, origin="tests/helpers/fault_cli.py")

if __name__ == "__main__":
    from cptbench.cli.main import cli

    cli.main(sys.argv[1:], prog_name="cptbench")
