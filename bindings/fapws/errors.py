"""Exceptions raised by fapws."""

from fapws._core import Backpressure, DeferQueueFull, SetupError

__all__ = ["SetupError", "DeferQueueFull", "Backpressure"]
