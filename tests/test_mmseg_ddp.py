"""``frozen=False`` necks train under mmengine's DistributedDataParallel wrapper with its
default ``find_unused_parameters=False``: 2 gloo processes on CPU, 2 iterations, every
registered upsampler that has weights. A parameter that never gets a gradient fails at the
second iteration."""
import datetime
import os
import pathlib

import pytest
import torch
import torch.multiprocessing as mp

from mmseg_helpers import CONFIGS, tiny_config
from upsampler_helpers import FEATSHARP_KWARGS, TINY_UPSAMPLER_KWARGS, learned_upsamplers

pytestmark = pytest.mark.slow

NECK_KWARGS = {**TINY_UPSAMPLER_KWARGS, "featsharp": FEATSHARP_KWARGS}
UPSAMPLERS = learned_upsamplers()
WORLD_SIZE = 2


def _ddp_worker(rank: int, init_method: str, data_root: str, out_dir: str):
    """One process: for each upsampler, a Runner (launcher 'pytorch', mmengine's
    ``MMDistributedDataParallel`` with its defaults; ``device_ids`` unset, as CPU modules
    need) trains the tiny linear probe with a trainable neck for 2 iterations (an unused
    parameter fails at the second)."""
    import torch.distributed as dist
    from mmengine.runner import Runner

    import anyup_dense.integrations.mmseg  # noqa: F401

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE))
    dist.init_process_group("gloo", init_method=init_method, world_size=WORLD_SIZE, rank=rank,
                            timeout=datetime.timedelta(seconds=120))
    results = {}
    for name in UPSAMPLERS:
        try:
            cfg = tiny_config(CONFIGS / "linear_probe" / "bilinear_vit-s14-dinov2_linear-probe_ade20k-151_448x448.py",
                              pathlib.Path(data_root), f"{out_dir}/{name}", "bilinear", epochs=1)
            cfg.model.neck = dict(type="UpsamplerNeck", upsampler=name, frozen=False, **NECK_KWARGS.get(name, {}))
            cfg.merge_from_dict({"train_dataloader.batch_size": 1, "param_scheduler": [],
                                 "default_hooks.checkpoint.interval": 100})
            cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=2, val_interval=100)
            cfg.launcher = "pytorch"
            cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", broadcast_buffers=False, device_ids=None)
            cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
            cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
            torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
            runner = Runner.from_cfg(cfg)
            neck = runner.model.module.neck
            before = {k: p.detach().clone() for k, p in neck.named_parameters()}
            runner.train()
            results[name] = {"error": None, "iter": runner.iter, "before": before,
                             "after": {k: p.detach().clone() for k, p in neck.named_parameters()},
                             "find_unused_parameters": runner.model.find_unused_parameters}
        except Exception as err:  # reported by the test, per upsampler
            results[name] = {"error": f"{type(err).__name__}: {err}"}
        dist.barrier()
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("mmseg_ddp")
    mp.start_processes(_ddp_worker, nprocs=WORLD_SIZE, start_method="fork",
                       args=(f"file://{out}/init", str(synthetic_root), str(out)))
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    return {name: [rank[name] for rank in ranks] for name in UPSAMPLERS}


def test_learned_upsamplers_are_covered():
    assert {"anyup", "featsharp", "featup_jbu", "jafar", "loftup", "naf", "uplift"} <= set(UPSAMPLERS)


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_trainable_neck_trains_under_mmengine_ddp(upsampler, ddp_results):
    rank0, rank1 = ddp_results[upsampler]
    assert rank0["error"] is None and rank1["error"] is None, (rank0["error"], rank1["error"])
    assert rank0["iter"] == rank1["iter"] == 2
    assert rank0["find_unused_parameters"] is False
    keys = list(rank0["before"])
    assert keys
    for key in keys:
        torch.testing.assert_close(rank1["before"][key], rank0["before"][key], rtol=0, atol=0)  # broadcast
        torch.testing.assert_close(rank1["after"][key], rank0["after"][key], rtol=0, atol=0)  # same step
    unchanged = [k for k in keys if torch.equal(rank0["before"][k], rank0["after"][k])]
    assert not unchanged, unchanged
