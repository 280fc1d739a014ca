"""Small constructor arguments that make every registered upsampler work on a tiny ViT with
32 channels and 4x4 to 8x8 feature grids (shared by the framework tests)."""

TINY_UPSAMPLER_KWARGS = {
    "anyup": {"qk_dim": 16},
    "featup_jbu": {"dim": 32},
    "jafar": {"v_dim": 32, "qk_dim": 16},
    "loftup": {"dim": 32, "num_heads": 2},
    "naf": {"kernel_size": 3},
    "upsample_anything": {"steps": 2},
    "uplift": {"in_channels": 32},
    "featup_implicit": {"proj_dim": 16, "steps": 1, "kernel_size": 7},
}
# FeatSharp's arguments for a neck on a 56-pixel crop (Detectron2 derives them from the ViT)
FEATSHARP_KWARGS = dict(dim=32, model_resolution=56, num_heads=2)


def learned_upsamplers():
    """Registered upsamplers with trainable weights (the per-image fits and the baselines have none)."""
    import anyup_dense

    kwargs = {**TINY_UPSAMPLER_KWARGS, "featsharp": FEATSHARP_KWARGS}
    return [name for name in anyup_dense.list_upsamplers()
            if any(True for _ in anyup_dense.build_upsampler(name, **kwargs.get(name, {})).parameters())]
