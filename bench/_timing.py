"""Shared accumulator for training time; a separate module so functions serialised by aiqc
refer to it (by module) instead of carrying a copy."""

TRAINING = {"seconds": 0.0}
