"""A checkpoint of the wrong kind given as ``pretrained=`` is named as such, with what to pass
instead: not torch's raw ``weights_only`` error, nor a bare key mismatch.

The files are written here in the formats the other tools write: an mmengine training
checkpoint (``meta`` + ``state_dict`` + ``message_hub`` holding mmengine's ``HistoryBuffer``,
as ``Runner.save_checkpoint`` stores it), an mmseg model's flat state_dict, a timm ViT's
state_dict, a Detectron2 checkpoint.
"""
import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from anyup_dense import build_upsampler
from anyup_dense.backbones import TimmViT
from anyup_dense.checkpoints import (CheckpointMismatchError, CheckpointReadError, foreign_checkpoint_kind,
                                     foreign_pickle_kind, load_state_dict_strict)

TINY_VIT = dict(model_name="vit_small_patch14_dinov2", img_size=28, depth=1, embed_dim=16, num_heads=2)


def upsampler_state():
    return build_upsampler("anyup", qk_dim=16).state_dict()


def mmseg_state(with_upsampler: bool = True) -> dict:
    """An mmseg model's state_dict: backbone, neck (an upsampler neck) and head entries."""
    state = {"backbone.model.cls_token": torch.zeros(1, 1, 16), "decode_head.conv_seg.weight": torch.zeros(4, 16, 1, 1)}
    if with_upsampler:
        state.update({f"neck.upsampler.{k}": v for k, v in upsampler_state().items()})
    return state


def mmengine_checkpoint(path, with_history: bool = True, with_upsampler: bool = True):
    """What ``Runner.save_checkpoint`` writes (meta with numpy values, message_hub state)."""
    hub = MessageHub.get_instance("test_checkpoint_kind_errors")
    hub.update_scalar("train/loss", 1.0)
    checkpoint = {"meta": {"epoch": 1, "seed": np.int64(0)} if with_history else {"epoch": 1},
                  "state_dict": mmseg_state(with_upsampler)}
    if with_history:
        checkpoint["message_hub"] = hub.state_dict()
    else:
        checkpoint["optimizer"] = {"state": {}, "param_groups": []}
    torch.save(checkpoint, path)
    return path


def test_mmengine_training_checkpoint_as_upsampler_pretrained(tmp_path):
    path = mmengine_checkpoint(tmp_path / "epoch_1.pth")
    with pytest.raises(CheckpointReadError) as info:
        build_upsampler("anyup", pretrained=str(path), qk_dim=16)
    message = str(info.value)
    assert "an mmengine/mmseg training checkpoint" in message and str(path) in message
    assert "load_from=" in message and "not as pretrained=" in message
    assert "neck.upsampler." in message  # how to extract the trained upsampler it holds
    # the hint follows the content: no upsampler in the checkpoint, no extraction hint
    bare = mmengine_checkpoint(tmp_path / "bare.pth", with_upsampler=False)
    assert "neck.upsampler." not in foreign_pickle_kind(str(bare))


def test_the_extraction_the_message_gives_loads(tmp_path):
    """Following the hint (keys under 'neck.upsampler.', prefix dropped) gives a loadable file
    with exactly the trained weights."""
    path = mmengine_checkpoint(tmp_path / "epoch_1.pth")
    checkpoint = torch.load(path, weights_only=False)  # our own file, written just above
    extracted = {k[len("neck.upsampler."):]: v for k, v in checkpoint["state_dict"].items()
                 if k.startswith("neck.upsampler.")}
    torch.save(extracted, tmp_path / "upsampler.pth")
    model = build_upsampler("anyup", pretrained=str(tmp_path / "upsampler.pth"), qk_dim=16)
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][f"neck.upsampler.{key}"])


def test_loadable_training_checkpoint_named_at_key_mismatch(tmp_path):
    """A training checkpoint that weights_only reads (no numpy / HistoryBuffer): the key
    mismatch error says what it is (AnyUp reads the file as a state_dict; FeatUp unwraps
    ``state_dict`` first and sees a whole mmseg model's keys)."""
    path = mmengine_checkpoint(tmp_path / "plain.pth", with_history=False)
    with pytest.raises(CheckpointMismatchError, match="an mmengine/mmseg training checkpoint") as info:
        build_upsampler("anyup", pretrained=str(path), qk_dim=16)
    assert "AnyUp loads its own state_dict" in str(info.value) and "unexpected keys" in str(info.value)  # the listing stays
    with pytest.raises(CheckpointMismatchError, match="the state_dict of a whole mmseg model"):
        build_upsampler("featup_jbu", pretrained=str(path), dim=16)


def test_timm_backbone_state_dict_as_upsampler_pretrained(tmp_path):
    torch.save(TimmViT(**TINY_VIT).model.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(CheckpointMismatchError, match=r"a timm ViT backbone's state_dict .*TimmViT\(pretrained=PATH\)"):
        build_upsampler("anyup", pretrained=str(tmp_path / "vit.pth"), qk_dim=16)


def test_mmengine_checkpoint_as_backbone_pretrained(tmp_path):
    path = mmengine_checkpoint(tmp_path / "epoch_1.pth")
    with pytest.raises(CheckpointReadError, match="backbone weights .* is an mmengine/mmseg training checkpoint"):
        TimmViT(pretrained=str(path), **TINY_VIT)


def test_detectron2_checkpoint_named():
    assert "a Detectron2 checkpoint" in foreign_checkpoint_kind({"model": {}, "iteration": 10})


def test_other_mismatches_keep_the_plain_error():
    """An unrecognised file, or one of the model's own kind (a timm ViT of another size given to
    a timm ViT), gets the plain key listing, no guessed kind."""
    model = build_upsampler("anyup", qk_dim=16)
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_strict(model, {"foo": torch.zeros(1)}, source="checkpoint x")
    assert str(info.value).startswith("checkpoint x does not match AnyUp")
    small, larger = TimmViT(**TINY_VIT).model, TimmViT(**{**TINY_VIT, "embed_dim": 32}).model
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_strict(small, larger.state_dict(), source="vit")
    assert "timm ViT backbone" not in str(info.value) and "shape mismatches" in str(info.value)
    assert foreign_checkpoint_kind(upsampler_state()) is None
