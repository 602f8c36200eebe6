"""Colorful prompt tuning (CPT): paint candidates, ask a masked-LM which colour the expression is in.

* :mod:`.config` - :class:`~cptbench.cpt.config.CptConfig`, the options of the CPT methods;
* :mod:`.method` - the registered methods ``cpt-blk`` and ``cpt-seg``;
* :mod:`.palettes` - named and inline palettes, palette files and the canonical config value that
  makes run ids depend on a file's name and content, not its path;
* :mod:`.painting` - candidate pixel masks (box / segmentation), vectorised blending,
  the candidate grouping rule and the LRU of adapter-prepared painted images;
* :mod:`.prompts` - the three release templates, expression truncation, the category segment;
* :mod:`.score_rules` - the score rules (``logit``, ``ratio``, ``logsoftmax``);
* :mod:`.passes` - the order and batches of a method's passes on the device pipeline or the
  reference path, their scores, and the caches kept for few-shot training;
* :mod:`.pipeline` - the device pipeline (batches), built on :mod:`.device_images` (uploaded
  images and their processed bases), :mod:`.device_copies` (painted windows) and
  :mod:`.resample` (PIL's resize as tensor ops);
* :mod:`.training` - few-shot prompt tuning (MLM cross-entropy at ``[MASK]``);
* :mod:`.inspect` - what the model saw for one expression (``cptbench show``);
* :mod:`.colour_search` - the cross-modal colour search (solid colours over an RGB grid, colour
  words decoded at ``[MASK]``) and :mod:`.colour_plot`, its picture (``cptbench prompt-search``);
* :mod:`.bench` - the throughput benchmark of CPT's evaluation path (``cptbench bench``).

Every module imports torch inside the functions that use it, so importing the package, the
config or the method class loads no torch.
"""
