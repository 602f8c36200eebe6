"""Runs the cptbench CLI with an extra slow test method registered (used by the resume tests)."""

import sys
import time


from cptbench.methods import Method
from cptbench.methods.registry import method_registry
from cptbench.data.sampling import rng_for


class SlowRandom(Method):
    trains = True

    def fit(self, train, seed):
        self.seed = seed
        time.sleep(0.01)

    def predict(self, examples):
        time.sleep(0.01 * len(examples))
        return [rng_for("slow", self.seed, self.context.shots, ex.example_id).random(ex.n_candidates) for ex in examples]


method_registry().add("slow-random", lambda: SlowRandom, origin="tests/helpers/slow_cli.py")

if __name__ == "__main__":
    from cptbench.cli.main import cli

    cli.main(sys.argv[1:], prog_name="cptbench")
