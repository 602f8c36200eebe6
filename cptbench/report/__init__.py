"""Results a researcher can read and defend, built from a results folder alone.

- :mod:`.selection` - records by method label, their per-seed accuracies and predictions files
- :mod:`.compare` - paired comparisons of two methods (seed-paired tests, per-expression tests,
  the paper's headline figures), refusing to hide a model/proposal/data/limit mismatch
- :mod:`.plots` - matplotlib figures (accuracy and RSD against shots, accuracy against the number
  of candidates), with the plotted series returned beside each figure
- :mod:`.hardest` - the expressions a method gets wrong at every seed
- :mod:`.gallery` - painted prompts with the model's recorded choice
- :mod:`.provenance` - the command and versions behind every number
- :mod:`.document` - the self-contained HTML report and its Markdown twin

Library code: nothing here prints; matplotlib is imported only by the functions that draw.
"""
