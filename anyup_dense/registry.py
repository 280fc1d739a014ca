"""A minimal name -> builder registry (framework-free), and the upsamplers' instance.

One mechanism for every "choose by name" in the package: upsamplers (``UPSAMPLERS``, filled
by ``anyup_dense.upsamplers``), training recipes and optimizers (``anyup_dense.training``).
The MMSegmentation and Detectron2 integrations have their own registries.
"""
from typing import Callable, Dict, List


class Registry:
    """Maps a lower-case name to a callable (a class or a builder function)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: Dict[str, Callable] = {}

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

    def builders(self) -> Dict[str, Callable]:
        """name -> builder, in registration order (a copy)."""
        return dict(self._builders)

    def get(self, name: str) -> Callable:
        """The builder registered as ``name``; KeyError listing the registered names if none."""
        key = name.lower()
        if key not in self._builders:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._builders[key]

    def build(self, name: str, **kwargs):
        """``get(name)(**kwargs)``."""
        return self.get(name)(**kwargs)


UPSAMPLERS = Registry("upsampler")
