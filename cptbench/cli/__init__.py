"""The command-line interface (Click). Only this package imports click."""
