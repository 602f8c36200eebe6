"""Runs the cptbench CLI with the test methods registered (used by the resume and concurrency
tests: ``slow-random``, :mod:`plugin_methods`)."""

import sys

import plugin_methods  # noqa: F401  (registers the test methods)

if __name__ == "__main__":
    from cptbench.cli.main import cli

    cli.main(sys.argv[1:], prog_name="cptbench")
