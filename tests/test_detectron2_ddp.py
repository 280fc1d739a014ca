"""``MODEL.UPSAMPLER.FROZEN False`` under DistributedDataParallel with Detectron2's own
wrapping (``DefaultTrainer`` -> ``create_ddp_model``, ``find_unused_parameters=False``):
2 gloo processes on CPU, 3 iterations of the tiny Mask R-CNN, for every registered upsampler
with trainable weights.
A parameter that never gets a gradient makes DDP fail at the second iteration."""
import pytest
import torch
import torch.multiprocessing as mp

from detectron2_helpers import ddp_train_worker, synthetic_coco_files  # noqa: F401
from upsampler_helpers import learned_upsamplers

pytestmark = pytest.mark.slow

UPSAMPLERS = learned_upsamplers()
LEARNED = ("anyup", "featsharp", "featup_jbu")  # at least these have weights to train
WORLD_SIZE = 2


@pytest.fixture(scope="module")
def ddp_results(synthetic_coco_files, tmp_path_factory):  # noqa: F811
    """{upsampler: [rank 0 result, rank 1 result]} of one 2-process run over all upsamplers."""
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(ddp_train_worker, nprocs=WORLD_SIZE, start_method="fork",
                       args=(WORLD_SIZE, f"file://{out}/init", UPSAMPLERS, synthetic_coco_files, str(out)))
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    return {name: [rank[name] for rank in ranks] for name in UPSAMPLERS}


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_trainable_upsampler_trains_under_detectron2_ddp(upsampler, ddp_results):
    rank0, rank1 = ddp_results[upsampler]
    assert rank0["error"] is None and rank1["error"] is None, (rank0["error"], rank1["error"])
    assert rank0["iter"] == rank1["iter"] == 3  # SOLVER.MAX_ITER: iterations 0, 1, 2 ran
    assert rank0["ddp"] == {"type": "DistributedDataParallel", "find_unused_parameters": False}
    upsampler_keys = [k for k in rank0["before"] if k.startswith("upsampler.")]
    if upsampler in LEARNED:
        assert upsampler_keys
    for key, before in rank0["before"].items():
        torch.testing.assert_close(rank1["before"][key], before, rtol=0, atol=0)  # broadcast from rank 0
        torch.testing.assert_close(rank1["after"][key], rank0["after"][key], rtol=0, atol=0)  # same averaged step
    changed = [k for k in upsampler_keys if not torch.equal(rank0["before"][k], rank0["after"][k])]
    assert len(changed) == len(upsampler_keys), sorted(set(upsampler_keys) - set(changed))
