"""Foundations every layer may import (and that import nothing of cptbench's other layers): the
error hierarchy, the box convention and its one IoU, the name registry with "did you mean", list
and YAML parsing, fault points for the kill tests, and provenance facts (versions, git revision)."""
