"""One command to check a CUDA machine: Triton against the torch backend, then the benchmark.

    python tools/gpu_check.py                      # on a CUDA machine, a few minutes
    python tools/gpu_check.py --json gpu_check.json --skip-benchmark

1. Correctness: the Triton window attention against the torch backend, forward and the
   gradients of q, k and v, in float32, bfloat16 and float16, on odd and non-square shapes,
   batch 2, C = 1 and C = 384, mixed q/k/v dtypes (what autocast hands over); and
   ``backend="auto"`` selecting Triton under ``no_grad``, ``inference_mode`` and autocast.
2. Benchmark (``tools/benchmark.py``): AnyUp's attention op and the whole model at 448^2 and
   896^2, ours (torch, Triton) beside the dense reference, forward and forward+backward, time
   and peak memory, printed as a table and written to ``--bench-json``.

Exits non-zero when a check fails. On a machine without CUDA, ``--device cpu`` runs part 1
through Triton's interpreter (``TRITON_INTERPRET=1``; small shapes only, for testing this
script).
"""
import argparse
import importlib.util
import json
import os
import pathlib
import sys
from typing import Dict, List

# (B, heads, Ho, Wo, h, w, d, C, ratio): odd and non-square, every border truncated, batch 2,
# C = 1 and C = 384, output smaller than the key grid, full attention.
SHAPES = [
    (1, 4, 37, 53, 5, 7, 32, 1, 0.1),
    (2, 4, 64, 48, 9, 7, 32, 384, 0.1),
    (1, 2, 19, 13, 5, 4, 16, 17, 0.25),
    (1, 1, 6, 5, 9, 8, 16, 3, 0.0),
]
QUICK_SHAPES = [(1, 2, 12, 9, 5, 4, 8, 3, 0.1), (2, 1, 9, 10, 4, 6, 4, 1, 0.0)]
# Relative to max |reference|: float32 is exact up to accumulation order; half precisions
# round inputs, probabilities and gradients once or twice (measured on CPU: 1.7e-2 bf16,
# 2.4e-3 fp16 for the worst gradient).
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 4e-3}


def _relative(ours, ref) -> float:
    ours, ref = ours.detach().double(), ref.detach().double()
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def check_backends(device, shapes) -> List[Dict[str, object]]:
    """Triton vs torch backend per shape and dtype (both given identical, rounded inputs)."""
    import torch

    from anyup_dense.upsamplers.attention_backend import window_attention

    rows = []
    for shape in shapes:
        b, nh, ho, wo, h, w, d, c, ratio = shape
        for dtype_name, tol in TOLERANCE.items():
            dtype = getattr(torch, dtype_name)
            gen = torch.Generator().manual_seed(0)
            base = [2 * torch.randn(b, nh, ho, wo, d, generator=gen), 2 * torch.randn(b, nh, h, w, d, generator=gen),
                    torch.randn(b, c, h, w, generator=gen)]
            grad_out = torch.randn(b, c, ho, wo, generator=gen).to(device, dtype)
            results = {}
            for backend in ("triton", "torch"):
                q, k, v = (t.to(device, dtype).requires_grad_() for t in base)
                out = window_attention(q, k, v, ratio, backend=backend)
                results[backend] = (out, *torch.autograd.grad(out, (q, k, v), grad_out))
            errors = {name: _relative(a, b) for name, a, b in zip(("out", "dq", "dk", "dv"), *results.values())}
            rows.append(dict(check="triton_vs_torch", shape=list(shape), dtype=dtype_name, errors=errors,
                             passed=max(errors.values()) <= tol))
    return rows


def check_mixed_dtypes(device, shape) -> Dict[str, object]:
    """bf16 q/k with float32 values (autocast's hand-over) on Triton vs the torch backend."""
    import torch

    from anyup_dense.upsamplers.attention_backend import window_attention

    b, nh, ho, wo, h, w, d, c, ratio = shape
    gen = torch.Generator().manual_seed(1)
    q, k = (2 * torch.randn(s, generator=gen).to(device, torch.bfloat16) for s in ((b, nh, ho, wo, d), (b, nh, h, w, d)))
    v = torch.randn(b, c, h, w, generator=gen).to(device)
    outs = [window_attention(q, k, v, ratio, backend=backend) for backend in ("triton", "torch")]
    error = _relative(*outs)
    return dict(check="mixed_dtypes_bf16_qk_fp32_v", errors={"out": error}, passed=error <= TOLERANCE["bfloat16"])


def check_auto_selection(device) -> List[Dict[str, object]]:
    """``backend="auto"`` picks Triton under no_grad, inference_mode and autocast."""
    import torch

    from anyup_dense.upsamplers import attention_backend
    rows = []
    modes = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
             "autocast_bf16": lambda: torch.autocast(device.type, dtype=torch.bfloat16)}
    for name, mode in modes.items():
        attention_backend.reset_triton_checks()
        with mode():
            selected = (attention_backend.triton_self_test(device) if device.type != "cuda"
                        else attention_backend.triton_available(device))
        rows.append(dict(check=f"auto_selects_triton_under_{name}", passed=bool(selected)))
    return rows


def run_benchmark(json_path: str) -> None:
    spec = importlib.util.spec_from_file_location("anyup_benchmark", pathlib.Path(__file__).with_name("benchmark.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    benchmark.main(["--device", "cuda", "--sizes", "448,896", "--channels", "384", "--upsamplers", "attn_op,anyup",
                    "--backends", "reference,torch,triton", "--json", json_path])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--json", default="gpu_check.json", help="where to write the correctness results")
    parser.add_argument("--bench-json", default="bench_cuda.json", help="where the benchmark writes its rows")
    parser.add_argument("--skip-benchmark", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine (or --device cpu to test the script)")
    device = torch.device(args.device)
    shapes = SHAPES if device.type == "cuda" else QUICK_SHAPES
    rows = [*check_backends(device, shapes), check_mixed_dtypes(device, shapes[0]), *check_auto_selection(device)]
    for row in rows:
        errors = " ".join(f"{k}={v:.1e}" for k, v in row.get("errors", {}).items())
        print(f"{'PASS' if row['passed'] else 'FAIL'}  {row['check']:<40} {row.get('dtype', ''):<9} "
              f"{row.get('shape', '')} {errors}")
    pathlib.Path(args.json).write_text(json.dumps(dict(device=str(device), rows=rows), indent=1))
    failed = sum(not row["passed"] for row in rows)
    print(f"{len(rows) - failed}/{len(rows)} checks passed; results in {args.json}")
    if device.type == "cuda" and not args.skip_benchmark:
        run_benchmark(args.bench_json)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
