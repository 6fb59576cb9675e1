"""Kernel backends behind one interface (:class:`KernelBackend`); see ``base`` for the math."""

from __future__ import annotations

from .base import DEFAULT_BLOCK_ROWS, KernelBackend
from .select import BACKENDS, auto_backend_name, make_backend

__all__ = ["BACKENDS", "DEFAULT_BLOCK_ROWS", "KernelBackend", "auto_backend_name", "make_backend"]
