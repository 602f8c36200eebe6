"""cptbench: a benchmark harness for few-shot visual grounding with colorful prompt tuning.

The library never prints; the command-line interface (``cptbench.cli``) owns all output.
Heavy dependencies (torch, transformers) are imported only inside the code that needs them.
"""

__version__ = "0.1.0"
