"""Training recipes for the upsamplers, sharing one loop.

    from anyup_dense.training import train, get_recipe
    recipe = get_recipe("anyup")
    config = recipe.config_class(data="images/", backbone="vit_small_patch14_dinov2.lvd142m")
    model_file = train("anyup", config)   # loads with build_upsampler("anyup", pretrained=model_file)

Pieces: :mod:`.data` (image folder, resumable sampling), :mod:`.augment` (AnyUp's
photometric chain), :mod:`.geometry` (view jitter), :mod:`.losses`, :mod:`.downsamplers`
(FeatUp's and FeatSharp's learned downsamplers), :mod:`.phis` (PHI-S statistics),
:mod:`.recipes` (anyup, featup_jbu, featsharp), :mod:`.loop`, :mod:`.checkpointing`.
The command-line entry point is ``tools/train_upsampler.py``.
"""
from anyup_dense.training.config import TrainConfig
from anyup_dense.training.loop import train
from anyup_dense.training.recipes import get_recipe, recipe_names

__all__ = ["TrainConfig", "train", "get_recipe", "recipe_names"]
