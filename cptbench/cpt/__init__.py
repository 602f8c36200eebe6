"""Colorful prompt tuning (CPT): paint candidates, ask a masked-LM which colour the expression is in.

* :mod:`.painting` - palettes, candidate pixel masks (box / segmentation), vectorised blending,
  the candidate grouping rule and the LRU of adapter-prepared painted images;
* :mod:`.prompts` - the three release templates, expression truncation, the category segment;
* :mod:`.score_rules` - the score rules (``logit``, ``ratio``, ``logsoftmax``);
* :mod:`.training` - few-shot prompt tuning (MLM cross-entropy at ``[MASK]``);
* :mod:`.method` - the registered methods ``cpt-blk`` and ``cpt-seg``;
* :mod:`.bench` - the throughput benchmark of CPT's evaluation path (``cptbench bench``).

torch is imported only by the modules that need it (training, method, pipeline).
"""
