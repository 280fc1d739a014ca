"""Make ``import mmseg.models`` work on mmcv-lite (which has no compiled ``mmcv._ext``).

mmseg 1.2.2 imports a few names from ``mmcv.ops`` at module level, and importing
``mmcv.ops`` loads every compiled op. When ``mmcv._ext`` is missing we install a bare
``mmcv.ops`` package whose ``__path__`` is the real directory (so its pure-Python
submodules stay importable), expose the pure-PyTorch ``point_sample`` and
``bilinear_grid_sample``, and make every other op raise ``ModuleNotFoundError`` on access
(mmseg's optional heads guard their imports with ``except ModuleNotFoundError``). Compiled
ops that mmseg imports eagerly (``sigmoid_focal_loss``) raise only when called.

With the full compiled mmcv this module does nothing. Call :func:`apply` (idempotent)
before the first ``import mmseg``; ``anyup_dense.integrations.mmseg`` does so.
"""
import importlib.util
import os
import sys
import types

PURE_PYTORCH_OPS = ("point_sample", "bilinear_grid_sample")
CALL_TIME_STUBS = ("sigmoid_focal_loss",)


def _compiled_ops_available() -> bool:
    return importlib.util.find_spec("mmcv._ext") is not None


def _unavailable(name: str):
    def stub(*args, **kwargs):
        raise RuntimeError(f"mmcv.ops.{name} needs the compiled mmcv; mmcv-lite has no ops. "
                           f"Install full mmcv==2.1.0 or use a pure-PyTorch alternative.")

    stub.__name__ = name
    return stub


def apply() -> None:
    """Install the ``mmcv.ops`` stand-in if needed. Safe to call many times."""
    if "mmcv.ops" in sys.modules or _compiled_ops_available():
        return
    import mmcv

    ops = types.ModuleType("mmcv.ops")
    ops.__path__ = [os.path.join(os.path.dirname(mmcv.__file__), "ops")]
    ops.__package__ = "mmcv.ops"
    ops.__file__ = os.path.join(ops.__path__[0], "__init__.py")
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops
    from mmcv.ops import point_sample as point_sample_module

    for name in PURE_PYTORCH_OPS:
        setattr(ops, name, getattr(point_sample_module, name))
    for name in CALL_TIME_STUBS:
        setattr(ops, name, _unavailable(name))

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ModuleNotFoundError(f"mmcv.ops.{name} is not available with mmcv-lite (no compiled ops)")

    ops.__getattr__ = __getattr__
