"""tools/gpu_check.py runs its correctness checks (here through Triton's CPU interpreter)
and reports each one; a failing check makes it exit non-zero."""
import json

import pytest

from helpers import load_tool


@pytest.mark.slow
def test_gpu_check_on_cpu_interpreter(tmp_path, monkeypatch):
    from anyup_dense.upsamplers import attention_backend

    gpu_check = load_tool("gpu_check")
    monkeypatch.setattr(gpu_check, "QUICK_SHAPES", gpu_check.QUICK_SHAPES[:1])  # one shape: the interpreter is slow
    # the self-test itself under each caller mode: tests/test_window_attention_real_use.py
    monkeypatch.setattr(attention_backend, "triton_self_test", lambda device: True)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    checks = {row["check"] for row in rows}
    assert {"triton_vs_torch", "mixed_dtypes_bf16_qk_fp32_v", "auto_selects_triton_under_no_grad",
            "auto_selects_triton_under_inference_mode", "auto_selects_triton_under_autocast_bf16"} <= checks
    assert {row["dtype"] for row in rows if "dtype" in row} == {"float32", "bfloat16", "float16"}
    float32 = [row for row in rows if row.get("dtype") == "float32"]
    assert all(max(row["errors"].values()) < 1e-5 for row in float32)  # measured <= 1.3e-6


@pytest.mark.slow
def test_gpu_check_fails_on_a_wrong_kernel(tmp_path, monkeypatch):
    import anyup_dense.ops.window_attention_triton as triton_ops

    gpu_check = load_tool("gpu_check")
    monkeypatch.setattr(gpu_check, "QUICK_SHAPES", gpu_check.QUICK_SHAPES[:1])
    monkeypatch.setattr(gpu_check, "check_auto_selection", lambda device: [])  # checked in the test above
    original = triton_ops._WindowAttention.apply
    monkeypatch.setattr(triton_ops._WindowAttention, "apply", lambda q, k, v, ratio: 1.01 * original(q, k, v, ratio))
    assert gpu_check.main(["--device", "cpu", "--json", str(tmp_path / "check.json")]) == 1
