"""The results folder: its layout, the append-only store, the typed run records and their selection."""
