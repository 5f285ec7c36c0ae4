"""Placeholder until the hybrid pickler lands: behaves as cloudpickle."""

from __future__ import annotations

from .base import CloudPickler


class HybridPickler(CloudPickler):
    name = "hybrid"
