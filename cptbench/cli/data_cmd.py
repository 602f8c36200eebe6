"""``cptbench data``: a group of data commands, each in its own module, loaded on demand."""

from __future__ import annotations

from cptbench.cli.lazy import LazyCommands

#: subcommand -> (module, attribute); a module that is not installed is simply not listed
DATA_COMMANDS = {
    "check": ("cptbench.cli.data_check_cmd", "check"),
    "download": ("cptbench.cli.data_download_cmd", "download"),
    "import": ("cptbench.cli.data_import_cmd", "import_"),
    "audit": ("cptbench.cli.data_audit_cmd", "audit"),
}

data = LazyCommands(DATA_COMMANDS, name="data", help="Get, inspect, validate and audit task data.")
