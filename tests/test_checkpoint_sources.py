"""Checkpoint sources: HTTP downloads that cannot hang, a corrupt cache, non-dict files,
``pathlib.Path``, sources that name no file (``True``, the default release: tests/test_releases.py).

A local HTTP server on 127.0.0.1 (``http.server`` in a thread) plays the network: it serves a
valid AnyUp checkpoint, never answers, drops the connection, answers 404, or sends a body
shorter than its Content-Length. Nothing here touches the real network.
"""
import http.client
import http.server
import pathlib
import threading
import time

import pytest
import torch

from anyup_dense import build_upsampler
from anyup_dense.checkpoints import (DEFAULT_DOWNLOAD_TIMEOUT, DOWNLOAD_TIMEOUT_ENV, CheckpointDownloadError,
                                     CheckpointReadError, Release, download_timeout, load_checkpoint, releases)
from anyup_dense.upsamplers.anyup import RELEASES
from helpers import load_fixture, relative_errors

CASE = "anyup_released_c100_down.pt"
MISSING_BYTES = 100  # what the "truncated" route leaves out of its body


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes by the first path component: good, silent, drop, truncated; anything else 404.
    Subclasses set ``payload`` (the served bytes) and ``release`` (an Event set at teardown, so a
    silent handler thread returns)."""
    payload: bytes
    release: threading.Event

    def do_GET(self):
        route = self.path.strip("/").split("/")[0]
        if route == "silent":
            self.release.wait(30)
        elif route == "drop":
            self.close_connection = True
        elif route in ("good", "truncated"):
            body = self.payload if route == "good" else self.payload[:-MISSING_BYTES]
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def case() -> dict:
    return load_fixture(CASE)


@pytest.fixture(scope="module")
def server(case, tmp_path_factory):
    """Base URL of the local server; its ``good`` route serves ``case["state_dict"]``."""
    path = tmp_path_factory.mktemp("served") / "state.pth"
    torch.save(case["state_dict"], path)
    handler = type("Handler", (_Handler,), {"payload": path.read_bytes(), "release": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    handler.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> pathlib.Path:
    """torch.hub's checkpoint cache, in tmp_path; downloads time out after 1 s."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV, "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def assert_matches_case(model, case: dict) -> None:
    """The model holds the fixture's weights and reproduces its official output (float32)."""
    for key, value in case["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key
    inputs = case["inputs"]
    with torch.no_grad():
        out = model(inputs["features"].float(), inputs["image"].float(), output_size=case["config"]["output_size"])
    assert relative_errors(out, case["output"])[1] <= 1e-5  # measured 5.7e-7 (float32 vs official float64)


@pytest.mark.slow
def test_http_download_lands_in_cache(server, cache_dir, case):
    url = f"{server}/good/anyup_paper.pth"
    model = build_upsampler("anyup", pretrained=url, progress=False)
    assert_matches_case(model, case)
    assert sorted(p.name for p in cache_dir.iterdir()) == ["anyup_paper.pth"]  # no .partial left behind


@pytest.mark.slow
def test_silent_server_times_out(server, cache_dir):
    """A server that accepts and never answers: the error arrives after the 1 s timeout."""
    url = f"{server}/silent/anyup_paper.pth"
    start = time.monotonic()
    with pytest.raises(CheckpointDownloadError) as info:
        build_upsampler("anyup", pretrained=url, progress=False)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed <= 1.0 + 3.0, elapsed  # slack for a loaded 2-core machine
    message = str(info.value)
    assert f"could not download {url} (no answer within 1 s; set {DOWNLOAD_TIMEOUT_ENV} to wait longer)" in message
    assert f"pass its path as pretrained=, or copy it to {cache_dir / 'anyup_paper.pth'}" in message
    assert list(cache_dir.iterdir()) == []


@pytest.mark.parametrize("route, reason", [
    ("drop", "Remote end closed connection without response"),
    ("missing", "HTTP Error 404: Not Found"),
    ("truncated", f"connection closed with {MISSING_BYTES} bytes still to come"),
])
def test_failed_download_names_url_and_offline_remedy(server, cache_dir, route, reason):
    url = f"{server}/{route}/anyup_paper.pth"
    with pytest.raises(CheckpointDownloadError) as info:
        build_upsampler("anyup", pretrained=url, progress=False)
    assert isinstance(info.value, OSError)
    assert str(info.value) == (f"could not download {url} ({reason}). To load the weights offline, fetch the file "
                               f"elsewhere and pass its path as pretrained=, or copy it to "
                               f"{cache_dir / 'anyup_paper.pth'}")
    assert list(cache_dir.iterdir()) == []  # a partial download never reaches the cache


def test_dropped_connection_is_not_a_raw_http_error(server, cache_dir):
    with pytest.raises(OSError) as info:
        load_checkpoint(f"{server}/drop/x.pth", {}, progress=False)
    assert type(info.value) is CheckpointDownloadError
    assert isinstance(info.value.__cause__, http.client.RemoteDisconnected)


def test_timeout_default_and_environment(monkeypatch):
    monkeypatch.delenv(DOWNLOAD_TIMEOUT_ENV, raising=False)
    assert download_timeout() == DEFAULT_DOWNLOAD_TIMEOUT == 60.0
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV, "2.5")
    assert download_timeout() == 2.5
    for bad in ("soon", "0", "-3", "nan"):
        monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=f"{DOWNLOAD_TIMEOUT_ENV}='{bad}': expected a positive number of seconds"):
            download_timeout()


def _corrupt(good: bytes) -> dict:
    return {"truncated": good[: len(good) // 2], "empty": b"", "html": b"<html>502 Bad Gateway</html>"}


@pytest.mark.parametrize("kind", ["truncated", "empty", "html"])
def test_corrupt_cache_file_is_named(server, cache_dir, case, tmp_path, kind):
    """A broken file already in the cache: the error names it and says to delete it (no download)."""
    torch.save(case["state_dict"], tmp_path / "good.pth")
    cache_dir.mkdir(parents=True)
    cached = cache_dir / "anyup_paper.pth"
    cached.write_bytes(_corrupt((tmp_path / "good.pth").read_bytes())[kind])
    url = f"{server}/good/anyup_paper.pth"
    with pytest.raises(CheckpointReadError) as info:
        build_upsampler("anyup", pretrained=url, progress=False)
    assert str(info.value).startswith(f"could not read the torch.hub cache file for {url} {cached}. It may be a "
                                      f"broken download: delete {cached} so that the next call downloads it "
                                      f"again, or replace it with a good copy. (torch.load: ")
    cached.unlink()  # as the message says: the next call downloads it again
    assert_matches_case(build_upsampler("anyup", pretrained=url, progress=False), case)


def test_corrupt_local_file_is_named(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointReadError, match=f"could not read checkpoint file {path}. \\(torch.load: "):
        load_checkpoint(str(path), {})


@pytest.mark.parametrize("content", [torch.ones(3), [torch.ones(3)], 7], ids=["Tensor", "list", "int"])
def test_non_dict_file_is_refused(tmp_path, content):
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    with pytest.raises(ValueError, match=f"checkpoint file {path} holds a {type(content).__name__}; expected a "
                                         f"state_dict \\(a dict of tensors\\) or a checkpoint dict"):
        build_upsampler("anyup", pretrained=path)


def test_pathlib_path(tmp_path, case):
    path = tmp_path / "anyup_paper"  # a Path is always a path, even when it spells a release name
    torch.save(case["state_dict"], path)
    assert_matches_case(build_upsampler("anyup", pretrained=path), case)
    table = releases(Release("anyup_paper", "file:///nowhere.pth"))
    assert load_checkpoint(path, table).keys() == case["state_dict"].keys()
    with pytest.raises(FileNotFoundError, match="neither a release name"):
        load_checkpoint(tmp_path / "missing.pth", RELEASES)


@pytest.mark.parametrize("source", [False, None, 3])
def test_sources_that_name_no_file(source):
    with pytest.raises(ValueError, match=f"pretrained={source!r}: expected True, a release name \\(releases: "
                                         f"'anyup_paper', 'anyup_multi_backbone'\\), a URL or a path"):
        load_checkpoint(source, RELEASES)
    with pytest.raises(ValueError, match="pretrained=True: there is no default release"):
        load_checkpoint(True, {})


@pytest.mark.parametrize("variable", ["ANYUP_DENSE_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_fails_at_once_naming_the_url(variable, tmp_path, monkeypatch):
    """No connection is attempted (the port is closed anyway); the message names the URL, the
    variable and the cache path to copy the file to."""
    monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = "http://127.0.0.1:9/anyup_paper.pth"
    with pytest.raises(OSError, match=rf"could not download {url} \(offline mode: .*{variable}.*copy it to "
                                      rf".*anyup_paper.pth"):
        build_upsampler("anyup", pretrained=url)
