"""Test-wide settings: float64 (references are computed at tight tolerance) and CPU only."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_enable_x64", True)
