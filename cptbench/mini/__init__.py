"""The bundled miniature vision-language model: its pretraining corpus and training loop."""
