"""Pretraining: backbones, losses, methods (registry), and the training loop."""
