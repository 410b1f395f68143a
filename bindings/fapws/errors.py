"""Exceptions raised by fapws."""

from fapws._core import DeferQueueFull, SetupError

__all__ = ["SetupError", "DeferQueueFull"]
