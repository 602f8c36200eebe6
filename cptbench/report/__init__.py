"""Results a researcher can read and defend, built from a results folder alone.

- :mod:`.aggregate` - run records grouped into leaderboard rows (seed statistics, labels)
- :mod:`.tables` - leaderboard rows as the long CSV/JSON, wide tables, Markdown and LaTeX
- :mod:`.leaderboard` - the leaderboard files of a results folder
- :mod:`.stats` - paired tests and the paper's headline figures (pure functions)
- :mod:`.compare` - paired comparisons of two methods (seed-paired tests, per-expression tests,
  the paper's headline figures), refusing to hide a model/proposal/data/limit mismatch
- :mod:`.plots` - matplotlib figures (accuracy and RSD against shots, accuracy against the number
  of candidates), with the plotted series returned beside each figure
- :mod:`.hardest` - the expressions a method gets wrong at every seed
- :mod:`.gallery` - painted prompts with the model's recorded choice
- :mod:`.data` - the examples behind prediction rows, read again from the task's data
- :mod:`.references` - published reference numbers (shown beside measured rows, never mixed)
- :mod:`.provenance` - the command and versions behind every number
- :mod:`.document` - the self-contained HTML report and its Markdown twin

Records are selected by method label in :mod:`cptbench.report.selection`.

Library code: nothing here prints; matplotlib is imported only by the functions that draw.
"""
