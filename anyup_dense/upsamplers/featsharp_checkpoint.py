"""FeatSharp checkpoints: training-checkpoint key names and the spectral re-parametrisation.

A training checkpoint (``last.pth.tar``) holds ``upsample_args`` (checked by :func:`model_state`)
and ``model_state`` with prefixes ``upsampler.``,
``normalizer.``, ``bias_buffer.`` and training-only ``downsampler.`` / ``scale_net.``; its
``nn.Linear`` weights may be stored spectrally re-parametrised, per row chunk k:

    <linear>.parametrizations.weight.original                [out, in]
    <linear>.parametrizations.weight.0[.parts.k].sn_scale    [1, 1]
    <linear>.parametrizations.weight.0[.parts.k]._u / ._v    [rows_k] / [in]
    <linear>.parametrizations.weight.0[.parts.k]._sn_version []   (absent = version 1)

:func:`bake_spectral_weights` turns those into plain ``<linear>.weight`` exactly as the official
loader does (see the FeatSharp spec, section 6.4 and the fixture notes).
"""
from typing import Dict, List, Mapping, Tuple

import torch
import torch.nn.functional as F

ORIGINAL_SUFFIX = ".parametrizations.weight.original"
PARAMETRIZATION_INFIX = ".parametrizations.weight."
POWER_ITERATION_EPS = 1e-6
SIGMA_EPS = 1e-6
SCALE_OFFSET = 0.05

# Official training-checkpoint prefix -> FeatSharp module prefix (first match wins).
KEY_PREFIXES: Tuple[Tuple[str, str], ...] = (
    ("upsampler.ups.0.jbu.ups.", "jbu.levels."),
    ("upsampler.ups.0.", ""),
    ("bias_buffer.buffer", "bias_buffer"),
    ("normalizer.", "normalizer."),
)
TRAINING_ONLY_PREFIXES = ("downsampler.", "scale_net.")
SUPPORTED_TYPES = ("featsharp", "featsharp.no-ln")  # upsample_args["type"] values this package builds


def bake_spectral_chunk(weight: torch.Tensor, sn_scale: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                        version: int) -> torch.Tensor:
    """Effective weight of one row chunk [rows, in], after one power-iteration step.

    ``u <- normalize(W v)``, ``v <- normalize(W^T u)`` (eps 1e-6, the step a module in train mode
    takes when it is first evaluated), then ``W * s / (u^T W v + 1e-6)`` with
    ``s = softplus(sn_scale) + 0.05`` (version 2) or ``sn_scale`` (version 1).
    """
    u = F.normalize(torch.mv(weight, v), dim=0, eps=POWER_ITERATION_EPS)
    v = F.normalize(torch.mv(weight.t(), u), dim=0, eps=POWER_ITERATION_EPS)
    sigma = torch.dot(u, torch.mv(weight, v))
    scale = F.softplus(sn_scale) + SCALE_OFFSET if version >= 2 else sn_scale
    return weight * (scale / (sigma + SIGMA_EPS))


def _chunk_prefixes(state_dict: Mapping[str, torch.Tensor], linear: str) -> List[str]:
    """Key prefixes of a Linear's parametrisation chunks, in row order."""
    single = f"{linear}{PARAMETRIZATION_INFIX}0."
    if single + "sn_scale" in state_dict:
        return [single]
    chunks = []
    while f"{single}parts.{len(chunks)}.sn_scale" in state_dict:
        chunks.append(f"{single}parts.{len(chunks)}.")
    if not chunks:
        raise ValueError(f"spectral checkpoint: {linear}{ORIGINAL_SUFFIX} has no sn_scale/_u/_v entries")
    return chunks


def bake_spectral_weights(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Replace every spectrally re-parametrised Linear by its plain ``.weight``; other keys unchanged."""
    linears = [key[:-len(ORIGINAL_SUFFIX)] for key in state_dict if key.endswith(ORIGINAL_SUFFIX)]
    baked = {key: value for key, value in state_dict.items()
             if not any(key.startswith(linear + ".parametrizations.") for linear in linears)}
    for linear in linears:
        original = state_dict[linear + ORIGINAL_SUFFIX]
        parts, start = [], 0
        for prefix in _chunk_prefixes(state_dict, linear):
            u = state_dict[prefix + "_u"]
            version_key = prefix + "_sn_version"
            version = int(state_dict[version_key]) if version_key in state_dict else 1
            rows = original[start:start + u.numel()]
            parts.append(bake_spectral_chunk(rows, state_dict[prefix + "sn_scale"], u, state_dict[prefix + "_v"],
                                             version))
            start += u.numel()
        if start != original.shape[0]:
            raise ValueError(f"spectral checkpoint: the chunks of {linear} cover {start} of "
                             f"{original.shape[0]} rows")
        baked[linear + ".weight"] = torch.cat(parts)
    return baked


def convert_official_state_dict(model_state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official ``model_state`` (plain or spectral) -> :class:`~anyup_dense.upsamplers.featsharp.FeatSharp` names.

    Strips DDP ``module.`` segments, bakes spectral weights, maps the prefixes in ``KEY_PREFIXES``,
    drops the training-only ``downsampler.*`` / ``scale_net.*``; any other key is passed through
    unchanged so that strict loading reports it.
    """
    stripped = {".".join(part for part in key.split(".") if part != "module"): value
                for key, value in model_state.items()}
    converted = {}
    for key, value in bake_spectral_weights(stripped).items():
        if key.startswith(TRAINING_ONLY_PREFIXES):
            continue
        for official, ours in KEY_PREFIXES:
            if key.startswith(official):
                key = ours + key[len(official):]
                break
        converted[key] = value
    return converted


def model_state(checkpoint: Mapping, upsample_factor: int, no_ln: bool) -> Mapping[str, torch.Tensor]:
    """The ``model_state`` of a training checkpoint (checking its ``upsample_args`` against
    ``upsample_factor`` and ``no_ln``), or ``checkpoint`` itself when it is a plain state_dict."""
    if "model_state" not in checkpoint:
        return checkpoint
    args = checkpoint.get("upsample_args") or {}
    expected_type = "featsharp.no-ln" if no_ln else "featsharp"
    if args.get("type", expected_type) not in SUPPORTED_TYPES:
        raise ValueError(f"checkpoint upsampler type {args['type']!r} is not supported "
                         f"(supported: {', '.join(SUPPORTED_TYPES)})")
    if args.get("type", expected_type) != expected_type:
        raise ValueError(f"checkpoint upsampler type {args['type']!r} needs no_ln={not no_ln}")
    if args.get("factor", upsample_factor) != upsample_factor:
        raise ValueError(f"checkpoint was trained for upsample_factor={args['factor']}, got {upsample_factor}")
    return checkpoint["model_state"]
