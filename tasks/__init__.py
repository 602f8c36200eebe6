"""Task cards (YAML), installed as the ``cptbench_tasks`` package data. No code lives here."""
