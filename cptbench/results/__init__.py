"""The results folder: its layout, the append-only store and the typed run records."""
