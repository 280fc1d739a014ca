"""timm ViT feature extractor: shapes, token handling, freezing, local weights."""
import huggingface_hub.constants
import pytest
import torch

from anyup_dense.backbones import TimmViT, find_local_weights
from anyup_dense.checkpoints import CheckpointMismatchError

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


@pytest.mark.slow
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


def test_original_dinov2_checkpoint_loads_through_timms_filter(tmp_path):
    """A checkpoint in the original DINOv2 layout (``mask_token``, ``register_tokens``, the class
    token's position inside ``pos_embed``, ``model`` key) loads through timm's checkpoint filter
    into exactly the timm weights it was made from: cls = cls_orig + pos_orig[:, 0] (float32
    addition, so a 1e-6 tolerance)."""
    source = tiny_vit().model.state_dict()
    original = {k: v for k, v in source.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    class_position = torch.randn(1, 1, 32)
    original.update(mask_token=torch.zeros(1, 32), register_tokens=source["reg_token"],
                    cls_token=source["cls_token"] - class_position,
                    pos_embed=torch.cat([class_position, source["pos_embed"]], dim=1))
    path = tmp_path / "dinov2_vits14_reg4.pth"
    torch.save({"model": original}, path)
    loaded = tiny_vit(pretrained=str(path)).model.state_dict()
    assert sorted(loaded) == sorted(source)
    for key, value in source.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=1e-6, msg=key)


def test_find_local_weights_follows_refs_main(tmp_path, monkeypatch):
    """The Hugging Face cache file of the revision ``refs/main`` names, not the alphabetically
    first snapshot; nothing when refs/main names a snapshot without the file."""
    name = "vit_small_patch14_dinov2.lvd142m"
    monkeypatch.delenv("ANYUP_DENSE_BACKBONE_WEIGHTS", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert find_local_weights(name) is None
    repo = tmp_path / "models--timm--vit_small_patch14_dinov2.lvd142m"
    for revision in ("aaa111", "bbb222"):
        (repo / "snapshots" / revision).mkdir(parents=True)
        (repo / "snapshots" / revision / "model.safetensors").write_bytes(b"")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("bbb222")
    assert find_local_weights(name) == str(repo / "snapshots" / "bbb222" / "model.safetensors")
    (repo / "snapshots" / "bbb222" / "model.safetensors").unlink()
    assert find_local_weights(name) is None
    monkeypatch.setenv("ANYUP_DENSE_BACKBONE_WEIGHTS", "/some/file.pth")
    assert find_local_weights(name) == "/some/file.pth"
