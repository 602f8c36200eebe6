"""Plug-in methods of the subprocess suites, in an importable module (as a third-party package's
would be: a sealed method's process and a Ray worker import it by name). Importing it registers them.

``fake-trainer`` trains (its scores depend on the k-shot draw), reports fit facts through
``describe()``, per-example counts through ``take_counters()`` and a volatile call count through
``perf_info()``: everything a resumed record must reproduce, without a model. ``slow-random``
sleeps a little per expression (the resume tests interrupt it mid-run).
"""

import time

from cptbench.data.sampling import rng_for
from cptbench.methods import Method
from cptbench.methods.registry import method_registry


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


class SlowRandom(Method):
    trains = True

    def fit(self, train, seed):
        self.seed = seed
        time.sleep(0.01)

    def predict(self, examples):
        time.sleep(0.01 * len(examples))
        return [rng_for("slow", self.seed, self.context.shots, ex.example_id).random(ex.n_candidates) for ex in examples]


for _name, _cls in (("fake-trainer", FakeTrainer), ("slow-random", SlowRandom)):
    if _name not in method_registry():
        method_registry().add(_name, lambda c=_cls: c, origin="tests/helpers/plugin_methods.py")
