"""Training recipes by name. Each is imported on first use, so a recipe whose upsampler
module is unavailable does not break the others."""
import importlib
from typing import List, Type

from anyup_dense.training.recipes.base import Recipe

_RECIPES = {
    "anyup": ("anyup_dense.training.recipes.anyup", "AnyUpRecipe"),
    "featup_jbu": ("anyup_dense.training.recipes.featup_jbu", "FeatUpJBURecipe"),
    "featsharp": ("anyup_dense.training.recipes.featsharp", "FeatSharpRecipe"),
}


def recipe_names() -> List[str]:
    return sorted(_RECIPES)


def get_recipe(name: str) -> Type[Recipe]:
    """The :class:`Recipe` subclass registered as ``name``."""
    if name not in _RECIPES:
        raise KeyError(f"unknown recipe {name!r}; choose one of {', '.join(recipe_names())}")
    module, attribute = _RECIPES[name]
    return getattr(importlib.import_module(module), attribute)


__all__ = ["Recipe", "get_recipe", "recipe_names"]
