"""``checkpoint_encoders`` (AnyUp, JAFAR): the same gradients as storing the activations."""
import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.upsamplers.recompute import records_graph

SMALL = {"anyup": dict(qk_dim=16, num_heads=2), "jafar": dict(qk_dim=16, v_dim=6, num_heads=2)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_checkpointed_encoders_give_the_same_gradients(name):
    torch.manual_seed(0)
    features, image = torch.randn(1, 6, 4, 5, dtype=torch.float64), torch.randn(1, 3, 16, 20, dtype=torch.float64)
    reference = build_upsampler(name, **SMALL[name]).double()
    checkpointed = build_upsampler(name, **SMALL[name], checkpoint_encoders=True).double()
    checkpointed.load_state_dict(reference.state_dict())
    results = []
    for model in (reference, checkpointed):
        x = features.clone().requires_grad_()
        out = model(x, image, (16, 20))
        results.append(torch.autograd.grad(out.square().sum(), [x, *model.parameters()]))
    for ours, expected in zip(*results):
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-15)


def test_records_graph():
    module = torch.nn.Linear(2, 2)
    x = torch.randn(2)
    assert records_graph(x, module=module)
    module.requires_grad_(False)
    assert not records_graph(x, module=module)
    assert records_graph(x.requires_grad_(), module=module)
    with torch.no_grad():
        assert not records_graph(x, module=module)
