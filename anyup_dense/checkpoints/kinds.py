"""Recognising checkpoints of another kind, so that errors name them with what to pass instead.

An mmengine/mmseg training checkpoint, an mmseg model's or a timm backbone's state_dict, a
Detectron2 checkpoint: no single upsampler or backbone loads them (:func:`foreign_checkpoint_kind`
on a loaded dict, :func:`foreign_pickle_kind` on a file ``weights_only`` loading refuses).
"""
import pickletools
import zipfile
from typing import Mapping, Optional

_MMENGINE_KEYS = ("meta", "message_hub", "optimizer", "param_schedulers")
_MMSEG_PREFIXES = ("backbone.", "neck.", "decode_head.", "auxiliary_head.", "data_preprocessor.")
_TIMM_VIT_KEYS = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
_UPSAMPLER_PREFIX = "neck.upsampler."
_EXTRACT_HINT = ("to reuse its (trained) upsampler, save {{k[len('neck.upsampler.'):]: v for k, v in "
                 "{state}.items() if k.startswith('neck.upsampler.')}} with torch.save and pass that file")
_RELEASED_HINT = "pass the released weights of the upsampler or backbone instead"


def foreign_checkpoint_kind(checkpoint: Mapping) -> Optional[str]:
    """What a loaded checkpoint dict is, in words with a remedy, when it is a recognised kind that
    no single upsampler or backbone loads: an mmengine/mmseg training checkpoint (``state_dict``
    with ``meta``/``message_hub``/``optimizer``), an mmseg model's state_dict (``backbone.*``,
    ``neck.*``, ``decode_head.*`` keys), a timm ViT backbone's state_dict, or a Detectron2
    checkpoint (``model`` + ``iteration``/``trainer``). ``None`` for anything else."""
    keys = set(checkpoint)
    if "state_dict" in keys and keys & set(_MMENGINE_KEYS):
        inner = checkpoint["state_dict"]
        has_upsampler = isinstance(inner, Mapping) and any(str(k).startswith(_UPSAMPLER_PREFIX) for k in inner)
        hint = _EXTRACT_HINT.format(state="checkpoint['state_dict']") if has_upsampler else _RELEASED_HINT
        return (f"an mmengine/mmseg training checkpoint (keys {sorted(keys)}): give it to mmseg as load_from= or "
                f"tools/test.py's CHECKPOINT, not as pretrained=; {hint}")
    if keys and all(isinstance(k, str) and k.startswith(_MMSEG_PREFIXES) for k in keys):
        hint = (_EXTRACT_HINT.format(state="state_dict") if any(k.startswith(_UPSAMPLER_PREFIX) for k in keys)
                else _RELEASED_HINT)
        return f"the state_dict of a whole mmseg model (backbone.*, neck.*, decode_head.* keys); {hint}"
    if all(k in keys for k in _TIMM_VIT_KEYS):
        return ("a timm ViT backbone's state_dict (patch_embed.*, blocks.* keys): give it to the backbone "
                "(TimmViT(pretrained=PATH)), not to an upsampler")
    if "model" in keys and keys & {"iteration", "trainer"}:
        return ("a Detectron2 checkpoint (keys 'model', 'iteration'/'trainer'): give it to Detectron2 as "
                "MODEL.WEIGHTS / train.init_checkpoint, not as pretrained=")
    return None


def foreign_pickle_kind(path: str) -> Optional[str]:
    """:func:`foreign_checkpoint_kind` of a torch file that ``weights_only`` loading refuses, read
    from the names its pickle mentions without unpickling anything: mmengine training
    checkpoints pickle mmengine's ``HistoryBuffer`` in ``message_hub``. ``None`` otherwise."""
    names = _pickle_names(path)
    if "message_hub" in names and "state_dict" in names or any(n.startswith("mmengine.") for n in names):
        hint = (_EXTRACT_HINT.format(state="checkpoint['state_dict']")
                if any(n.startswith(_UPSAMPLER_PREFIX) for n in names) else _RELEASED_HINT)
        return (f"an mmengine/mmseg training checkpoint (it pickles mmengine objects): give it to mmseg as "
                f"load_from= or tools/test.py's CHECKPOINT, not as pretrained=; {hint}")
    return None


def _pickle_names(path: str) -> set:
    """Every string and global name in the pickle of a torch zip file (read with ``pickletools``,
    nothing is executed); empty when the file is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            payload = archive.read(data) if data is not None else b""
        names = set()
        for opcode, arg, _ in pickletools.genops(payload):
            if opcode.name == "GLOBAL":
                names.add(str(arg).replace(" ", "."))
            elif isinstance(arg, str):
                names.add(arg)
        return names
    except (OSError, zipfile.BadZipFile, ValueError):
        return set()
