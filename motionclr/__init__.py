"""motionclr: preprocessing-first, motion-aware contrastive video pretraining."""

__version__ = "0.1.0"
