"""``python -m cptbench ...`` (also ``torchrun -m cptbench ...``): the same CLI as ``cptbench``."""

from cptbench.cli.main import cli

if __name__ == "__main__":
    cli.main(prog_name="cptbench")
