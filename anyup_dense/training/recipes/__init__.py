"""Training recipes by name: importing this package registers the built-in recipes in
``RECIPES`` (see :func:`~anyup_dense.training.recipes.base.register_recipe`)."""
from typing import List, Type

from anyup_dense.training.recipes.anyup import AnyUpRecipe
from anyup_dense.training.recipes.base import RECIPES, Recipe, register_recipe
from anyup_dense.training.recipes.featsharp import FeatSharpRecipe
from anyup_dense.training.recipes.featup_jbu import FeatUpJBURecipe


def recipe_names() -> List[str]:
    """Names of the registered recipes, sorted."""
    return RECIPES.names()


def get_recipe(name: str) -> Type[Recipe]:
    """The :class:`Recipe` subclass registered as ``name`` (KeyError listing the names if none)."""
    return RECIPES.get(name)


__all__ = ["RECIPES", "Recipe", "register_recipe", "get_recipe", "recipe_names", "AnyUpRecipe", "FeatSharpRecipe",
           "FeatUpJBURecipe"]
