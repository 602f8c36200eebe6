"""Runs the cptbench CLI with the test methods registered (``fake-trainer``, ``slow-random``:
:mod:`plugin_methods`), for the fault, distributed and sweep suites."""

import sys

import plugin_methods  # noqa: F401  (registers the test methods)

if __name__ == "__main__":
    from cptbench.cli.main import cli

    cli.main(sys.argv[1:], prog_name="cptbench")
