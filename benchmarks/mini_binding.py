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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="bundled:mini-vilt")
    ap.add_argument("--scenes", type=int, default=150)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from cptbench.mini.probe import binding_probe
    from cptbench.models.loading import load_adapter

    r = binding_probe(load_adapter(args.model), args.scenes, args.seed)
    print(f"model {args.model}: {r['scenes']} scenes")
    print(f"  colour-binding accuracy {r['binding']:.3f} (chance {r['chance']:.3f})")
    print(f"  red gain: described object painted {r['gain_target']:+.2f}, another object painted {r['gain_other']:+.2f}")
    print(f"  CPT accuracy on the probe {r['cpt']:.3f}")


if __name__ == "__main__":
    main()
