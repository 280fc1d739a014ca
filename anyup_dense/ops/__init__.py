"""Pure tensor functions (no module state, no framework): window attention, JBU kernels."""
from anyup_dense.ops.jbu import adaptive_conv, adaptive_conv_unfold
from anyup_dense.ops.neighborhood_attention import neighborhood_attention
from anyup_dense.ops.window_attention import (dense_window_mask, window_attention, window_attention_reference,
                                              window_attention_torch, window_bounds)

__all__ = ["window_attention", "window_attention_reference", "window_attention_torch", "window_bounds",
           "dense_window_mask", "adaptive_conv", "adaptive_conv_unfold", "neighborhood_attention"]
