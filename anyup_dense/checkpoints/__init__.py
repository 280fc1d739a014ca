"""Checkpoint I/O shared by the upsamplers and the backbones: release tables, downloads into
torch.hub's cache, reading every official file layout, and strict loading with readable errors.

Needs torch only (safetensors files need the ``safetensors`` package when one is read).
"""
from anyup_dense.checkpoints.cache import (DEFAULT_DOWNLOAD_TIMEOUT, DOWNLOAD_TIMEOUT_ENV, CheckpointDownloadError,
                                           download, download_timeout, hub_cache_path, is_url)
from anyup_dense.checkpoints.kinds import foreign_checkpoint_kind, foreign_pickle_kind
from anyup_dense.checkpoints.loader import cached_release, load_checkpoint, load_weights
from anyup_dense.checkpoints.reading import CheckpointReadError, is_safetensors, read_checkpoint, read_safetensors
from anyup_dense.checkpoints.releases import (LAYOUTS, Release, find_release, hf_url, release_for_backbone, releases,
                                              url_file_name, with_release_kwargs)
from anyup_dense.checkpoints.strict import CheckpointMismatchError, check_state_dict, load_state_dict_strict

__all__ = ["DEFAULT_DOWNLOAD_TIMEOUT", "DOWNLOAD_TIMEOUT_ENV", "LAYOUTS", "CheckpointDownloadError",
           "CheckpointMismatchError", "CheckpointReadError", "Release", "cached_release", "check_state_dict",
           "download", "download_timeout", "find_release", "foreign_checkpoint_kind", "foreign_pickle_kind",
           "hf_url", "hub_cache_path", "is_safetensors", "is_url", "load_checkpoint", "load_state_dict_strict",
           "load_weights", "read_checkpoint", "read_safetensors", "release_for_backbone", "releases",
           "url_file_name", "with_release_kwargs"]
