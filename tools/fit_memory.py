"""Process peak memory and time per step of the per-image fits (FeatUp implicit, Upsample Anything).

    python tools/fit_memory.py [--methods featup_implicit,upsample_anything] [--sizes 224,448] [--steps 2]

Each (method, size) runs in a fresh Python process (``--one``), so every row's peak RSS
(``ru_maxrss``, torch import included) belongs to that case alone. A case is one forward
(fit with ``--steps`` steps, then the application) on a random ImageNet-normalised image of
size x size, float32:

  * ``featup_implicit``: a featurizer of ViT-S/14's shape, a random 14 x 14 patch-embedding
    conv 3 -> 384, [N,3,R,R] -> [N,384,R/14,R/14] (224: 16 x 16, 448: 32 x 32), with the
    official settings otherwise; ``kernel_size`` is the smallest one >= the official 29 that
    tiles the grid (224: 29, 448: 33).
  * ``upsample_anything``: features [1,384,32,32] (scale 7 at 224, 14 at 448), official settings.

The peak of a fit is reached in its first step (later steps reuse the freed memory); s/step
(wall clock) and CPU s/step (all threads) are means over the steps after the first (the first
also featurises the views), or the first step's when ``--steps 1``. On a shared machine the
wall clock is noisy; compare CPU s/step. Figures: docs/benchmarks.md, "Per-image fits".
"""
import argparse
import json
import resource
import subprocess
import sys
import time

METHODS = ("featup_implicit", "upsample_anything")
PATCH = 14
CHANNELS = 384
UA_GRID = 32
OFFICIAL_KERNEL = 29


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    parser.add_argument("--sizes", default="224,448", help="comma-separated image sides (multiples of 14)")
    parser.add_argument("--steps", type=int, default=2, help="fit steps per case (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s <= 0 or s % PATCH for s in sizes):
        parser.error(f"--sizes must be positive multiples of {PATCH}, got {args.sizes}")
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args, methods, sizes


def featup_kernel_size(size: int, grid: int) -> int:
    """The smallest kernel >= the official 29 whose windows tile a ``grid`` x ``grid`` output on ``size``."""
    from anyup_dense.upsamplers.featup_implicit_layers import window_count
    return next(k for k in range(OFFICIAL_KERNEL, size + 1) if window_count(size, k, grid) == grid)


def run_case(method: str, size: int, steps: int, threads) -> dict:
    """One forward of ``method`` at ``size`` in this process; returns the row of the table."""
    import torch

    from anyup_dense import build_upsampler

    if threads is not None:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, size, size, generator=gen)
    stamps = []

    def callback(*_):
        stamps.append((time.perf_counter(), time.process_time()))

    if method == "featup_implicit":
        grid = size // PATCH
        embed = torch.nn.Conv2d(3, CHANNELS, PATCH, stride=PATCH)
        kernel = featup_kernel_size(size, grid)
        up = build_upsampler(method, steps=steps, kernel_size=kernel)
        start = (time.perf_counter(), time.process_time())
        fits = up.fit(image, embed, callback=callback)
        out = up.apply_fits(fits, image)
        case = f"features [1,{CHANNELS},{grid},{grid}], kernel_size {kernel}"
    else:
        up = build_upsampler(method, steps=steps)
        features = torch.randn(1, CHANNELS, UA_GRID, UA_GRID, generator=gen)
        start = (time.perf_counter(), time.process_time())
        maps = up.fit(image, (UA_GRID, UA_GRID), callback=callback)
        out = up.apply_maps(maps, features, image)
        case = f"features [1,{CHANNELS},{UA_GRID},{UA_GRID}], scale {up.fit_scale((size, size), (UA_GRID, UA_GRID))}"
    total = time.perf_counter() - start[0]
    per_step = [_per_step([start[i]] + [s[i] for s in stamps]) for i in (0, 1)]
    return dict(method=method, size=size, case=case, output=list(out.shape), steps=steps,
                peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, s_per_step=per_step[0],
                cpu_s_per_step=per_step[1], total_s=total, threads=torch.get_num_threads())


def _per_step(clock: list) -> float:
    """Mean step time from clock readings at the start and after each step, without the first step
    when there are more."""
    times = [b - a for a, b in zip(clock, clock[1:])]
    return sum(times[1:]) / (len(times) - 1) if len(times) > 1 else times[0]


def main(argv=None) -> list:
    args, methods, sizes = parse_args(argv)
    if args.one:
        print(json.dumps(run_case(args.one[0], int(args.one[1]), args.steps, args.threads)))
        return []
    rows = []
    print(f"{'method':<18} {'size':>5} {'peak RSS':>10} {'s/step':>8} {'CPU s/step':>10} {'total s':>8}  case")
    for method in methods:
        for size in sizes:
            command = [sys.executable, __file__, "--one", method, str(size), "--steps", str(args.steps)]
            if args.threads is not None:
                command += ["--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{method} at {size} failed:\n{done.stderr}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{method:<18} {size:>5} {row['peak_mib'] / 1024:>6.2f} GiB {row['s_per_step']:>8.1f} "
                  f"{row['cpu_s_per_step']:>10.1f} {row['total_s']:>8.1f}  {row['case']}, {row['steps']} steps, "
                  f"{row['threads']} threads", flush=True)
    return rows


if __name__ == "__main__":
    main()
