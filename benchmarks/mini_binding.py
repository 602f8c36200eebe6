"""Binding probe for a masked-LM VL model on synthref-style scenes (the bundled model's yardstick).

On fresh scenes from their own stream (never synthref's), for an object described without its colour
("the small circle at the top is [MASK]"), it measures:
  * colour-binding accuracy: is the object's true colour the arg-max over the colour words?
  * red gain: how much CPT's translucent red paint raises the "red" logit when painted over the
    described object, versus over another object (CPT needs the first to be clearly larger);
  * CPT accuracy of that probe: is the painted object with the highest "red" logit the described one?

    python benchmarks/mini_binding.py bundled:mini-vilt --scenes 150
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="bundled:mini-vilt")
    ap.add_argument("--scenes", type=int, default=150)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    import torch

    from cptbench.cpt.painting import paint
    from cptbench.data.scenes import COLOURS, object_mask, render_scene, sample_scene, scene_rng
    from cptbench.mini.corpus import RED, colour_free_expressions
    from cptbench.models.loading import load_adapter

    adapter = load_adapter(args.model)
    words = [RED, *COLOURS]
    ids = [adapter.word_id(w) for w in words]
    bound, gain_target, gain_other, cpt = [], [], [], []
    for i in range(args.scenes):
        rng = scene_rng(args.seed, "binding-probe", i)
        scene = sample_scene(rng, 64, int(rng.integers(3, 7)))
        target = int(rng.integers(len(scene.objects)))
        exprs = colour_free_expressions(scene, target)
        if not exprs:
            continue
        image = render_scene(scene)
        painted = [paint(image, object_mask(o, 64)[None], [(240, 0, 30)], 127 / 255) for o in scene.objects]
        batch = adapter.collate([adapter.prepare_image(x) for x in [image, *painted]])
        with torch.no_grad():
            logits = adapter.mask_logits(batch, [f"{exprs[0]} is {adapter.mask_token}"] * (1 + len(painted)))[:, ids].numpy()
        bound.append(words[int(np.argmax(logits[0]))] == scene.objects[target].colour)
        gain = logits[1:, 0] - logits[0, 0]
        gain_target.append(gain[target])
        gain_other.append(np.delete(gain, target).mean())
        cpt.append(int(np.argmax(logits[1:, 0])) == target)
    print(f"model {args.model}: {len(bound)} scenes")
    print(f"  colour-binding accuracy {np.mean(bound):.3f} (chance {1 / len(COLOURS):.3f})")
    print(f"  red gain: described object painted {np.mean(gain_target):+.2f}, another object painted {np.mean(gain_other):+.2f}")
    print(f"  CPT accuracy on the probe {np.mean(cpt):.3f}")


if __name__ == "__main__":
    main()
