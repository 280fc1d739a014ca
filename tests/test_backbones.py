"""timm ViT feature extractor: shapes, token handling, freezing, local weights."""
import pytest
import torch

from anyup_dense.backbones import TimmViT, find_local_weights
from anyup_dense.upsamplers.checkpoint import CheckpointMismatchError

TINY = dict(img_size=56, depth=2, embed_dim=32, num_heads=2)


def tiny_vit(**kwargs) -> TimmViT:
    return TimmViT("vit_small_patch14_reg4_dinov2", **{**TINY, **kwargs})


def test_patch_maps_drop_prefix_and_register_tokens():
    vit = tiny_vit(out_indices=(0, -1))
    image = torch.randn(2, 3, 70, 42)  # not the construction size: position embeddings are resized
    maps = vit(image)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 5, 3), (2, 32, 5, 3)]
    assert vit.model.num_prefix_tokens == 5  # cls + 4 registers, all dropped from the maps
    tokens = vit.model.forward_features(image)  # [B, 5 + 15, C], final norm applied
    assert torch.allclose(maps[1].flatten(2).transpose(1, 2), tokens[:, 5:], atol=1e-6)
    assert vit.patch_size == 14 and vit.embed_dim == 32
    assert vit.mean == (0.485, 0.456, 0.406) and vit.std == (0.229, 0.224, 0.225)


def test_frozen_by_default_and_stays_in_eval():
    vit = tiny_vit()
    assert all(not p.requires_grad for p in vit.parameters())
    vit.train()
    assert not vit.model.training
    out = vit(torch.randn(1, 3, 28, 28))[0]
    assert not out.requires_grad


def test_trainable_on_request():
    vit = tiny_vit(frozen=False)
    vit.train()
    assert vit.model.training
    vit(torch.randn(1, 3, 28, 28))[0].sum().backward()
    assert vit.model.blocks[0].attn.qkv.weight.grad is not None


def test_rejects_sizes_not_divisible_by_patch():
    with pytest.raises(ValueError, match="must be divisible by the patch size 14"):
        tiny_vit()(torch.randn(1, 3, 30, 28))


def test_local_weights_load_and_mismatch(tmp_path):
    source = tiny_vit()
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": source.model.state_dict()}, path)
    loaded = tiny_vit(pretrained=str(path))
    assert loaded.weights == str(path)
    for key, value in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    bad = dict(source.model.state_dict())
    bad.pop("cls_token")
    torch.save(bad, path)
    with pytest.raises(CheckpointMismatchError, match="missing keys \\(1\\): cls_token"):
        tiny_vit(pretrained=str(path))


def test_find_local_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("ANYUP_DENSE_BACKBONE_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert find_local_weights("vit_small_patch14_dinov2.lvd142m") is None
    snapshot = tmp_path / "models--timm--vit_small_patch14_dinov2.lvd142m" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"")
    assert find_local_weights("vit_small_patch14_dinov2.lvd142m") == str(snapshot / "model.safetensors")
    monkeypatch.setenv("ANYUP_DENSE_BACKBONE_WEIGHTS", "/some/file.pth")
    assert find_local_weights("vit_small_patch14_dinov2.lvd142m") == "/some/file.pth"
