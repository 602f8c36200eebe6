"""cptbench baselines (import name ``cptbench_baselines``): comparison methods that plug in through
the public ``cptbench.methods`` entry-point group, exactly as a third-party package would, plus the
published reference numbers."""
