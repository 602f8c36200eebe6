"""Binding probe: does a masked-LM VL model tie a colour, and CPT's paint, to the described object?

On fresh scenes from their own stream (never synthref's), for an object described without its colour
("the small circle at the top is [MASK]"):

* ``binding``: the object's true colour is the arg-max over the colour words;
* ``gain_target`` / ``gain_other``: how much CPT's translucent red paint raises the "red" logit when
  painted over the described object / over another object (CPT needs the first to be larger);
* ``cpt``: the painted object with the highest "red" logit is the described one.
"""

from __future__ import annotations

import numpy as np


def binding_probe(adapter, n_scenes: int = 150, seed: int = 7) -> dict[str, float]:
    """The probe's four figures (module docstring) over ``n_scenes`` fresh scenes, with chance."""
    import torch

    from cptbench.cpt.painting import paint
    from cptbench.data.scenes import COLOURS, sample_scene, scene_rng
    from cptbench.data.scene_render import object_mask, render_scene
    from cptbench.mini.corpus import RED, unique_descriptions

    words = [RED, *COLOURS]
    ids = [adapter.word_id(w) for w in words]
    bound, gain_target, gain_other, cpt = [], [], [], []
    for i in range(n_scenes):
        rng = scene_rng(seed, "binding-probe", i)
        scene = sample_scene(rng, 64, int(rng.integers(3, 7)))
        target = int(rng.integers(len(scene.objects)))
        exprs = unique_descriptions(scene, target, colour=False, position=True)
        if not exprs:
            continue
        image = render_scene(scene)
        painted = [paint(image, object_mask(o, 64)[None], [(240, 0, 30)], 127 / 255) for o in scene.objects]
        batch = adapter.collate([adapter.prepare_image(x) for x in [image, *painted]])
        with torch.no_grad():
            logits = adapter.mask_logits(batch, [f"{exprs[0]} is {adapter.mask_token}"] * (1 + len(painted)))
        logits = logits[:, ids].float().numpy()
        bound.append(words[int(np.argmax(logits[0]))] == scene.objects[target].colour)
        gain = logits[1:, 0] - logits[0, 0]
        gain_target.append(gain[target])
        gain_other.append(np.delete(gain, target).mean())
        cpt.append(int(np.argmax(logits[1:, 0])) == target)
    return {"scenes": len(bound), "binding": float(np.mean(bound)), "chance": 1 / len(COLOURS),
            "gain_target": float(np.mean(gain_target)), "gain_other": float(np.mean(gain_other)),
            "cpt": float(np.mean(cpt))}
