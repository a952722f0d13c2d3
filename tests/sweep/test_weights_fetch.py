"""`nrfer weights fetch`: timm's weights for a space's backbones into the Hugging Face cache,
once, from a hub served here on loopback (huggingface_hub's own client, pointed at it with
HF_ENDPOINT); offline, a clear error naming what is missing and how to copy a cache; the
sweep's pre-flight names the command when the cache lacks weights."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import REPO

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serves `files` ({"/timm/<name>/resolve/main/<file>": bytes}) as the hub does: HEAD
    with the commit, ETag and size, GET with the bytes; anything else 404 with the hub's
    entry-not-found error code. Counts the GETs of files (`gets`)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.gets = files, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _head(self) -> bytes | None:
                body = hub.files.get(self.path.split("?")[0])
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return body

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                body = self._head()
                if body is not None:
                    hub.gets.append(self.path)
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def resnet10t_weights(tmp_path) -> bytes:
    """A timm resnet10t state dict as the hub's model.safetensors (random init: no download)."""
    import timm
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(timm.create_model("resnet10t", pretrained=False).state_dict(), str(path))
    return path.read_bytes()


def fetch(cache: Path, endpoint: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": endpoint}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run(
        [sys.executable, "-m", "sweep.cli", "weights", "fetch", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_fetch_downloads_a_spaces_backbones_once_into_the_cache(tmp_path, resnet10t_weights):
    import timm

    from nrfer.models.pretrained import load_pretrained, resolve_weights

    hub = FakeHub({"/timm/resnet10t.c3_in1k/resolve/main/model.safetensors": resnet10t_weights})
    cache = tmp_path / "hub-cache"
    try:
        first = fetch(cache, hub.url, "--space", "demo")  # demo samples resnet10t only
        assert first.returncode == 0, first.stdout + first.stderr
        assert "timm weights for 1 backbone(s)" in first.stdout
        assert "resnet10t" in first.stdout and "downloaded:" in first.stdout, first.stdout
        assert len(hub.gets) == 1
        again = fetch(cache, hub.url, "--space", "demo", "--backbone", "resnet10t")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "timm weights for 1 backbone(s)" in again.stdout  # named twice, fetched once
        assert "already here:" in again.stdout and len(hub.gets) == 1
    finally:
        hub.close()
    # what trials read: the cache, offline; the bytes are the hub's and load into the backbone
    os.environ["HF_HUB_CACHE"] = str(cache)
    try:
        path = resolve_weights("hub", "resnet10t")
        assert path.read_bytes() == resnet10t_weights
        assert str(path).startswith(str(cache))
        report = load_pretrained(timm.create_model("resnet10t", num_classes=0), path)
        assert report["tensors"] > 0 and report["dropped"] == ["fc.bias", "fc.weight"]
    finally:
        del os.environ["HF_HUB_CACHE"]


def test_offline_it_names_what_is_missing_and_how_to_copy_a_cache(tmp_path):
    hub = FakeHub({})
    closed = hub.url
    hub.close()  # nothing listens there any more: the hub is unreachable
    cache = tmp_path / "hub-cache"
    out = fetch(cache, closed, "--space", "ferplus_vit", "--backbone", "no_such_net")
    assert out.returncode == 1
    assert "timm weights for 7 backbone(s)" in out.stdout
    assert "timm has no Hugging Face weights for backbone 'no_such_net'" in out.stderr
    line = next(x for x in out.stderr.splitlines() if "could not be reached" in x)
    for backbone in (
        "vit_base_patch16_224",
        "swin_base_patch4_window7_224",
        "deit_small_patch16_224",
    ):
        assert backbone in line, line
    assert "run `nrfer weights fetch --space ferplus_vit` and copy" in out.stderr
    assert f"to {cache}" in out.stderr and "HF_HOME / HF_HUB_CACHE" in out.stderr
    assert "Retry" not in out.stderr  # asked once, not five times with back-off
    assert not cache.exists() or not any(cache.rglob("*.safetensors"))


def test_the_preflight_names_the_fetch_command_when_the_cache_lacks_weights(tmp_path, monkeypatch):
    from nrfer.data import DataFormatError
    from sweep.runtime.checks import check_pretrained
    from sweep.spec.space import load_space

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    spec = load_space("demo", ["fixed.model.pretrained=hub"])
    with pytest.raises(DataFormatError) as e:
        check_pretrained(spec)
    text = str(e.value)
    assert "no weights for 1 of the 1 backbones" in text and "'resnet10t'" in text
    assert f"nrfer weights fetch --space {spec.source}" in text
