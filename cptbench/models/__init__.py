"""Backbone adapters: one small interface over hub vision-language models (ViLT, FLAVA, BridgeTower)."""
