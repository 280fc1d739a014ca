"""A minimal name -> builder registry for upsamplers (framework-free).

The MMSegmentation and Detectron2 integrations have their own registries; this one only
lets ``build_upsampler("anyup", ...)`` find the right constructor without importing any
framework.
"""
from typing import Callable, Dict, List

import torch.nn as nn


class Registry:
    """Maps a lower-case name to a callable that returns an ``nn.Module``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: Dict[str, Callable[..., nn.Module]] = {}

    def register(self, name: str) -> Callable:
        """Decorator: ``@UPSAMPLERS.register("anyup")`` on a class or builder function."""
        key = name.lower()

        def decorator(builder: Callable) -> Callable:
            if key in self._builders:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._builders[key] = builder
            return builder

        return decorator

    def names(self) -> List[str]:
        return sorted(self._builders)

    def builders(self) -> Dict[str, Callable[..., nn.Module]]:
        """name -> builder, in registration order (a copy)."""
        return dict(self._builders)

    def build(self, name: str, **kwargs) -> nn.Module:
        key = name.lower()
        if key not in self._builders:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._builders[key](**kwargs)


UPSAMPLERS = Registry("upsampler")


def build_upsampler(name: str, **kwargs) -> nn.Module:
    """Build a registered upsampler, e.g. ``build_upsampler("anyup", pretrained="anyup_paper")``."""
    import anyup_dense.upsamplers  # noqa: F401  (registers the built-in upsamplers)

    return UPSAMPLERS.build(name, **kwargs)


def list_upsamplers() -> List[str]:
    import anyup_dense.upsamplers  # noqa: F401

    return UPSAMPLERS.names()
