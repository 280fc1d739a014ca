"""Make the released Detectron2 (0.5/0.6) import and run on current numpy and Pillow.

* Pillow >= 10 removed ``PIL.Image.LINEAR`` (a default argument evaluated when
  ``detectron2.data`` is imported): alias it to ``BILINEAR``.
* numpy >= 1.24 removed ``np.int``, ``np.float``, ``np.complex``, ``np.object``, ``np.str``
  (and numpy 1.24-1.26 ``np.bool``), which detectron2 still uses: alias them to builtins.

Only missing attributes are added, so with old numpy/Pillow this does nothing. Call
:func:`apply` (idempotent) before importing detectron2; ``anyup_dense.integrations.detectron2``
does so.
"""
import builtins

NUMPY_ALIASES = ("int", "float", "complex", "object", "str", "bool")


def apply() -> None:
    import numpy as np
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR
    for name in NUMPY_ALIASES:
        if name not in np.__dict__:
            setattr(np, name, getattr(builtins, name))
