"""Pure tensor functions (no module state, no framework), one topic per submodule:

* ``window_geometry``: AnyUp's attention windows and argument checks;
* ``window_attention``: window attention, dense reference and chunked torch backend;
* ``window_attention_triton``: the same on Triton (needs ``triton``);
* ``chunking``: chunk sizes of the chunked ops;
* ``neighborhood_attention``, ``neighborhood_attention_dilated``: k x k neighbourhood attention;
* ``jbu``: joint bilateral upsampling kernels;
* ``mixed_precision``: the ops' precision policy.

Import from the submodule (``from anyup_dense.ops.jbu import adaptive_conv``); the package
re-exports nothing, so no function hides a submodule of the same name. Choosing a window
attention backend (and the Triton self-test it caches) is
:mod:`anyup_dense.upsamplers.attention_backend`.
"""
