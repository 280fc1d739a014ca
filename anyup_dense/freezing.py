"""Frozen modules: no gradients, and eval mode that a parent's ``train()`` does not undo (torch only).

    freeze(model.upsampler)   # requires_grad=False everywhere, eval mode, and from now on
    model.train()             # ... leaves model.upsampler (and everything inside it) in eval mode

``nn.Module.train(mode)`` sets ``training`` on a module and calls ``train(mode)`` on each child, so a
frozen submodule would otherwise drop back into training mode (dropout, batch-norm statistics) as
soon as its parent is trained. :func:`freeze` gives the frozen module a ``train`` that always
switches it to eval mode, so its owner needs no ``train`` override of its own.
"""
import functools

import torch.nn as nn


def _train_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """The ``train`` of a frozen module: ``mode`` is ignored, the module stays in eval mode."""
    return nn.Module.train(module, False)


def freeze(module: nn.Module) -> nn.Module:
    """``module`` with ``requires_grad=False`` on every parameter, in eval mode, and kept there by
    every later ``train()`` (its own or a parent's); returns ``module``."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    module.requires_grad_(False)
    module.train = functools.partial(_train_in_eval, module)  # a partial, unlike a bound method, pickles
    return module.train()


def is_frozen(module: nn.Module) -> bool:
    """Whether :func:`freeze` was applied to ``module``."""
    train = module.__dict__.get("train")
    return isinstance(train, functools.partial) and train.func is _train_in_eval
