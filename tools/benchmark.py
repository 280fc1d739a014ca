"""Time and peak memory of the upsamplers (and of their hot ops) vs output size.

Each case is one upsampler (or op), backend, output size S and channel count C, with
features [B, C, S//14, S//14] and a guidance image of S x S. For every case it measures the
forward time (no grad), the forward+backward time (gradients for the features and the
weights) and the peak memory of each. Rows of our fast paths are shown side by side with
their reference (AnyUp's dense ``reference`` backend; JBU's ``adaptive_conv_unfold``).
Op-level cases isolate the hot spots: ``attn_op`` is AnyUp's window attention alone
(q/k of the released width, values with C channels) per backend, ``jbu_op`` the JBU
adaptive convolution. AnyUp's fwd+bwd rows use ``checkpoint_encoders=True`` (how one trains
through it). FeatSharp runs at model resolution S (its native N = 2 S / 14 map
resized to S) with a stand-in featurizer (a fixed 1x1 projection of pooled crops), so its
rows time the upsampler, not a backbone.

  * CUDA: CUDA events after warm-up, median of repeats; peak = torch.cuda.max_memory_allocated
    minus the allocation before the call.
  * CPU: each case runs in a fresh subprocess; peak = ru_maxrss minus the RSS after imports,
    model build and input creation; time = median of time.perf_counter over repeats.
A case whose rough memory estimate exceeds ``--max-memory-gb`` is reported as skipped, one
that runs out of memory as OOM; neither stops the run.

Examples:
  python tools/benchmark.py --sizes 448 --channels 384 --upsamplers anyup --backends reference,torch
  python tools/benchmark.py --device cuda --json bench_cuda.json --plot bench_cuda.png
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import torch

PATCH = 14
QK_DIM, HEADS = 128, 4  # AnyUp's released attention width and heads
JBU_TAPS = 7 * 7  # FeatUp JBU kernel (radius 3)
OPS = ("attn_op", "jbu_op")
# The default rows; --upsamplers takes any registered upsampler.
DEFAULT_ROWS = ("bilinear", "anyup", "featup_jbu", "featsharp", "jafar", "loftup", "naf", "uplift") + OPS
ANYUP_BACKENDS = ("reference", "torch", "triton")
JBU_OPS = ("adaptive_conv_unfold", "adaptive_conv")
REFERENCE_VARIANT = {"anyup": "reference", "attn_op": "reference", "jbu_op": "adaptive_conv_unfold",
                     "jafar": "dense", "loftup": "dense", "naf": "unchunked", "uplift": "unchunked"}
# Upsamplers whose attention is chunked, beside their unchunked (official-formula) path:
# variant -> constructor arguments.
CHUNKED_VARIANTS = {
    "jafar": {"dense": {"backend": "dense"}, "chunked": {}},
    "loftup": {"dense": {"dense": True}, "chunked": {}},
    "naf": {"unchunked": {"max_pixels_per_chunk": 2 ** 40}, "chunked": {}},
    "uplift": {"unchunked": {"chunked": False}, "chunked": {}},
}
GIB = 2 ** 30
MIB = 2 ** 20


@dataclass
class Case:
    """One measurement: ``name`` is an upsampler (or ``jbu_op``), ``variant`` its backend/op."""
    name: str
    variant: str
    size: int
    channels: int
    batch: int = 1
    results: Dict[str, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}[{self.variant}]" if self.variant else self.name

    @property
    def feature_size(self) -> int:
        return max(2, self.size // PATCH)


def estimate_bytes(case: Case, backward: bool, element_size: int = 4) -> int:
    """Rough peak-memory estimate (order of magnitude only) used to skip hopeless cases."""
    b, c, q = case.batch, case.channels, case.size ** 2
    n = case.feature_size ** 2
    out = b * c * q
    if case.name in ("anyup", "attn_op"):
        attention = {"reference": 2 * b * HEADS * q * n + q * n, "torch": 4 * 2 ** 24, "triton": 0}[case.variant]
        encoders = 6 * b * QK_DIM * q if case.name == "anyup" else 2 * b * QK_DIM * q  # or just q, k
        elements = encoders + 2 * out + attention
    elif case.name == "jbu_op":
        elements = (JBU_TAPS + 2) * out if case.variant == "adaptive_conv_unfold" else 3 * out + b * JBU_TAPS * q
    elif REFERENCE_VARIANT.get(case.name) == case.variant:  # dense attention logits of the official formula
        elements = 8 * out + 2 * b * HEADS * q * n
    else:
        elements = (2 if case.name == "bilinear" else 8) * out
    return elements * element_size * (3 if backward else 1)


def _runner(forward: Callable[[bool], torch.Tensor], inputs: List[torch.Tensor],
            model: Optional[torch.nn.Module] = None) -> Callable[[bool], torch.Tensor]:
    """``run(backward)``: forward (no grad) or forward + backward through ``inputs`` (and
    ``model``'s weights), clearing the gradients afterwards."""
    def run(backward: bool) -> torch.Tensor:
        with torch.set_grad_enabled(backward):
            for tensor in inputs:
                tensor.requires_grad_(backward)
            out = forward(backward)
            if backward:
                out.sum().backward()
                for tensor in inputs:
                    tensor.grad = None
                if model is not None:
                    model.zero_grad(set_to_none=True)
        return out
    return run


def _build(case: Case, device: torch.device) -> Callable[[bool], torch.Tensor]:
    """A closure ``run(backward)`` executing the case once (forward, or forward+backward)."""
    b, c, s, f = case.batch, case.channels, case.size, case.feature_size
    if case.name == "jbu_op":
        from anyup_dense.ops import jbu

        op = getattr(jbu, case.variant)
        source = torch.randn(b, c, s + 6, s + 6, device=device)
        kernels = torch.rand(b, s, s, 7, 7, device=device)
        return _runner(lambda backward: op(source, kernels), [source, kernels])
    if case.name == "attn_op":
        from anyup_dense.upsamplers.attention_backend import window_attention

        q = torch.randn(b, HEADS, s, s, QK_DIM // HEADS, device=device)
        k = torch.randn(b, HEADS, f, f, QK_DIM // HEADS, device=device)
        v = torch.randn(b, c, f, f, device=device)
        return _runner(lambda backward: window_attention(q, k, v, 0.1, backend=case.variant), [q, k, v])

    import anyup_dense

    # AnyUp trains with its full-resolution encoders recomputed in backward (forward-only timings
    # are unaffected): that is the setting the fwd+bwd rows measure.
    kwargs = {"anyup": {"backend": case.variant, "checkpoint_encoders": True}, "featup_jbu": {"dim": c},
              "featsharp": {"dim": c, "model_resolution": f * PATCH, "patch_size": PATCH},
              "jafar": {"v_dim": c}, "loftup": {"dim": c}, "uplift": {"in_channels": c}}
    variant = CHUNKED_VARIANTS.get(case.name, {}).get(case.variant, {})
    model = anyup_dense.build_upsampler(case.name, **kwargs.get(case.name, {}), **variant).to(device)
    features = torch.randn(b, c, f, f, device=device)
    image = torch.randn(b, 3, s, s, device=device)
    extra = {}
    if model.requires_featurizer:
        projection = torch.randn(c, 3, device=device)
        extra["featurizer"] = lambda crops: torch.einsum(
            "ck,nkhw->nchw", projection, torch.nn.functional.adaptive_avg_pool2d(crops, (f, f)))
    return _runner(lambda backward: model(features, image, (s, s), **extra), [features], model)


def _time(run: Callable, backward: bool, device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time in ms."""
    for _ in range(warmup):
        run(backward)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(backward)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            run(backward)
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(error).lower() \
        or "not enough memory" in str(error).lower()


def measure(case: Case, device: torch.device, args) -> Dict[str, object]:
    """Time and peak memory of forward ("fwd") and forward+backward ("fwdbwd") in this process."""
    results: Dict[str, object] = {}
    try:
        run = _build(case, device)
    except (ImportError, KeyError, TypeError, ValueError) as error:
        return {"fwd": f"unavailable: {error}", "fwdbwd": f"unavailable: {error}"}
    for phase, backward in (("fwd", False), ("fwdbwd", True)):
        estimate = estimate_bytes(case, backward)
        if estimate > args.max_memory_gb * GIB:
            results[phase] = f"skipped: est. {estimate / GIB:.1f} GiB > {args.max_memory_gb:g} GiB"
            continue
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            else:
                base = _max_rss()
            ms = _time(run, backward, device, args.warmup, args.repeats)
            peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _max_rss()) - base
            results[phase] = "ok"
            results[f"{phase}_ms"] = ms
            results[f"{phase}_peak_mib"] = max(peak, 0) / MIB
        except Exception as error:  # noqa: BLE001 (a failed case is reported, not fatal)
            results[phase] = "OOM" if _is_oom(error) else f"error: {type(error).__name__}: {error}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def measure_in_subprocess(case: Case, args) -> Dict[str, object]:
    """Run :func:`measure` in a fresh interpreter so that ru_maxrss belongs to this case alone."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(asdict(case)),
               "--warmup", str(args.warmup), "--repeats", str(args.repeats),
               "--max-memory-gb", str(args.max_memory_gb), "--device", "cpu"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=args.case_timeout)
    except subprocess.TimeoutExpired:
        return {"fwd": f"timeout > {args.case_timeout} s", "fwdbwd": f"timeout > {args.case_timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    reason = "OOM (killed)" if proc.returncode in (-9, 137) else f"crashed (rc {proc.returncode}): " \
        f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}"
    return {"fwd": reason, "fwdbwd": reason}


def make_cases(args) -> List[Case]:
    cases = []
    for name in args.upsamplers:
        variants = {"anyup": args.backends, "attn_op": args.backends, "jbu_op": JBU_OPS,
                    **{k: list(v) for k, v in CHUNKED_VARIANTS.items()}}.get(name, [""])
        for size in args.sizes:
            for channels in args.channels:
                for variant in variants:
                    cases.append(Case(name, variant, size, channels, args.batch))
    return cases


def available(case: Case, device: torch.device) -> Optional[str]:
    """None if the case can be built here, else why not."""
    import anyup_dense

    if case.name == "jbu_op":
        try:
            from anyup_dense.ops import jbu
        except ImportError:
            return "anyup_dense.ops.jbu not present"
        return None if hasattr(jbu, case.variant) else f"jbu.{case.variant} not present"
    if case.name != "attn_op" and case.name not in anyup_dense.list_upsamplers():
        return f"upsampler {case.name!r} not registered"
    if case.variant == "triton":
        from anyup_dense.upsamplers.attention_backend import triton_available

        if not triton_available(device):
            return "triton backend needs CUDA"
    return None


def _fmt(value: Optional[float], unit: str) -> str:
    return "-" if value is None else f"{value:,.1f} {unit}"


def _ratio(ours: Optional[float], ref: Optional[float]) -> str:
    return "" if ours is None or ref is None or ours == 0 else f"({ref / ours:.1f}x)"


def print_table(cases: List[Case]) -> None:
    """One row per case; fast paths show ``(reference / ours)`` after each number."""
    refs = {(c.name, c.size, c.channels): c.results for c in cases if REFERENCE_VARIANT.get(c.name) == c.variant}
    header = f"{'upsampler':<32}{'size':>6}{'C':>5}  {'fwd':>22}{'fwd+bwd':>24}{'fwd peak':>24}{'fwd+bwd peak':>24}"
    print(header)
    print("-" * len(header))
    for case in cases:
        r, ref = case.results, refs.get((case.name, case.size, case.channels), {})
        if str(r.get("fwd", "")).startswith("unavailable"):
            continue
        cells = []
        for key, unit in (("fwd_ms", "ms"), ("fwdbwd_ms", "ms"), ("fwd_peak_mib", "MiB"), ("fwdbwd_peak_mib", "MiB")):
            phase = key.split("_")[0]
            if r.get(phase) != "ok":
                cells.append(f"{str(r.get(phase, ''))[:22]:>24}")
                continue
            ratio = "" if ref is r else _ratio(r.get(key), ref.get(key))
            cells.append(f"{_fmt(r.get(key), unit) + ' ' + ratio:>24}")
        print(f"{case.label:<32}{case.size:>6}{case.channels:>5}" + "".join(cells))
    notes = {f"{c.label}: {c.results.get('fwd')}" for c in cases if str(c.results.get("fwd", "")).startswith(
        ("unavailable", "error", "crashed"))}
    for note in sorted(notes):
        print("note:", note)


def plot(cases: List[Case], path: str) -> None:
    """Log-log time and peak memory vs output pixels, one line per (case label, C)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    series: Dict[str, List[Case]] = {}
    for case in cases:
        series.setdefault(f"{case.label} C={case.channels}", []).append(case)
    for ax, (key, unit) in zip(axes, (("ms", "time (ms)"), ("peak_mib", "peak memory (MiB)"))):
        for name, group in sorted(series.items()):
            for phase, style in (("fwd", "-o"), ("fwdbwd", "--s")):
                points = [(c.size ** 2, c.results[f"{phase}_{key}"]) for c in group
                          if c.results.get(phase) == "ok" and c.results.get(f"{phase}_{key}", 0) > 0]
                if points:
                    ax.plot(*zip(*points), style, label=f"{name} {phase}")
        ax.set(xscale="log", yscale="log", xlabel="output pixels", ylabel=unit)
        ax.grid(True, which="both", alpha=0.3)
    legend_axis = axes[1] if axes[1].lines else axes[0]  # tiny cases may allocate no measurable memory
    legend_axis.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _csv(kind: Callable):
    return lambda text: [kind(item) for item in text.split(",") if item]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sizes", type=_csv(int), default=None,
                        help="output sizes (default 112,224,448,896 on CPU; also 1792 on CUDA)")
    parser.add_argument("--channels", type=_csv(int), default=[384, 768])
    parser.add_argument("--upsamplers", type=_csv(str), default=list(DEFAULT_ROWS),
                        help="any registered upsampler, or the ops attn_op, jbu_op")
    parser.add_argument("--backends", type=_csv(str), default=list(ANYUP_BACKENDS), help="AnyUp backends")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=None, help="default 3 on CUDA, 1 on CPU")
    parser.add_argument("--repeats", type=int, default=None, help="default 10 on CUDA, 2 on CPU")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="skip cases estimated above this (default 10 on CPU, 0.9 x GPU memory)")
    parser.add_argument("--case-timeout", type=float, default=1800, help="CPU: seconds per case subprocess")
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument("--plot", help="write a log-log PNG of time and memory vs output pixels")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    args.sizes = args.sizes or ([112, 224, 448, 896, 1792] if cuda else [112, 224, 448, 896])
    args.warmup = (3 if cuda else 1) if args.warmup is None else args.warmup
    args.repeats = (10 if cuda else 2) if args.repeats is None else args.repeats
    if args.max_memory_gb is None:
        args.max_memory_gb = 0.9 * torch.cuda.get_device_properties(0).total_memory / GIB if cuda else 10.0
    import anyup_dense

    known = anyup_dense.list_upsamplers() + list(OPS)
    for name in args.upsamplers:
        if name not in known:
            parser.error(f"unknown upsampler {name!r}; choose from {', '.join(known)}")
    for backend in args.backends:
        if backend not in ANYUP_BACKENDS:
            parser.error(f"unknown backend {backend!r}; choose from {', '.join(ANYUP_BACKENDS)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        case = Case(**json.loads(args.worker))
        print("RESULT " + json.dumps(measure(case, torch.device("cpu"), args)), flush=True)
        return
    device = torch.device(args.device)
    cases = make_cases(args)
    for case in cases:
        missing = available(case, device)
        if missing:
            case.results = {"fwd": f"unavailable: {missing}", "fwdbwd": f"unavailable: {missing}"}
        elif device.type == "cuda":
            case.results = measure(case, device, args)
        else:
            case.results = measure_in_subprocess(case, args)
        print(f"# {case.label} {case.size} C={case.channels}: {case.results}", file=sys.stderr, flush=True)
    print(f"device: {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"features at 1/{PATCH} of the output, ratios = reference / ours")
    print_table(cases)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": args.device, "torch": torch.__version__,
                       "cases": [asdict(c) for c in cases]}, handle, indent=1)
    if args.plot:
        plot(cases, args.plot)


if __name__ == "__main__":
    main()
