"""tools/benchmark.py runs end to end on a tiny case and reports what it measured (not a timing test)."""
import json

import pytest

from helpers import load_tool


@pytest.mark.slow
def test_benchmark_writes_table_json_and_plot(tmp_path, capsys):
    benchmark = load_tool("benchmark")
    json_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    benchmark.main(["--sizes", "28", "--channels", "5", "--upsamplers", "attn_op",
                    "--backends", "reference,torch", "--repeats", "1", "--warmup", "0",
                    "--json", str(json_path), "--plot", str(plot_path)])
    table = capsys.readouterr().out
    assert "attn_op[torch]" in table and "attn_op[reference]" in table
    cases = {f"{c['name']}[{c['variant']}]": c["results"] for c in json.loads(json_path.read_text())["cases"]}
    for label in ("attn_op[reference]", "attn_op[torch]"):
        results = cases[label]
        assert results["fwd"] == "ok" and results["fwdbwd"] == "ok", (label, results)
        assert results["fwd_ms"] > 0 and results["fwd_peak_mib"] >= 0
    assert plot_path.stat().st_size > 1000


def test_memory_estimate_skips_hopeless_cases():
    benchmark = load_tool("benchmark")
    args = benchmark.parse_args(["--max-memory-gb", "1"])
    case = benchmark.Case("anyup", "reference", 896, 384)
    assert benchmark.measure(case, benchmark.torch.device("cpu"), args)["fwd"].startswith("skipped: est.")
