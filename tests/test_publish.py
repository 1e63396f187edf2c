"""publish: fails fast and cleanly without a reachable Hub, never leaks the token or writes into the build folder,
and refuses to overwrite a different dataset without --force.

Remote reads, repo and branch creation go through the real `huggingface_hub.HfApi` to a stub Hub on 127.0.0.1.
The one call that cannot run here, `HfApi.upload_folder`, is replaced where a test says so in its docstring.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_build import make_kept, make_sample

from r1distill.build import publish
from r1distill.build import stage as build
from r1distill.build.publish import PublishConfig, Remote, decide
from r1distill.build.stage import BuildConfig
from r1distill.core.store import StageError, read_manifest

TOKEN = "hf_NotARealTokenButSecret0123456789"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    make_kept(run / "filter", [make_sample(i) for i in range(10)])
    build.run(BuildConfig(validation_fraction=0.2), run / "filter", run / "build")
    return run / "build"


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder` (hidden ones too) with its content hash and mtime."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(tmp_path: Path, build_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: t\nrun_dir: {tmp_path / 'run'}\npublish:\n  repo_id: someone/r1-data\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    clean["HF_HOME"] = str(tmp_path / "hf-home")  # no stored login from this machine
    return subprocess.run(
        [sys.executable, "-m", "r1distill.build.publish", "-c", str(recipe), "-i", str(build_dir), *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


def test_unreachable_endpoint_fails_fast_and_writes_nothing(tmp_path, built):
    before = snapshot(built)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    proc = cli(tmp_path, built, {"HF_TOKEN": TOKEN, "HF_ENDPOINT": endpoint})
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("r1distill publish: error: cannot reach the Hub at " + endpoint)
    assert "network" in last
    assert TOKEN not in proc.stderr + proc.stdout
    assert snapshot(built) == before
    assert not (tmp_path / "run" / "publish" / "manifest.json").exists()


def test_offline_mode_and_missing_token_are_clear_errors(tmp_path, built):
    before = snapshot(built)
    offline = cli(tmp_path, built, {"HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set: publishing needs the network" in offline.stderr
    no_token = cli(tmp_path, built, {})
    assert no_token.returncode == 2 and "no Hugging Face token: set HF_TOKEN or run `hf auth login`" in no_token.stderr
    assert snapshot(built) == before


def test_unfinished_build_and_bad_repo_id(tmp_path, built):
    with pytest.raises(StageError, match="no manifest.json; the build stage did not finish"):
        publish.run(PublishConfig(repo_id="a/b"), tmp_path / "nothing", tmp_path / "publish")
    with pytest.raises(StageError, match="publish.repo_id: missing"):
        publish.run(PublishConfig(), built, tmp_path / "publish")
    with pytest.raises(StageError, match="publish.repo_id 'a/b/c'"):
        publish.run(PublishConfig(repo_id="a/b/c"), built, tmp_path / "publish")


LOCAL = {"content_hash": "c0ffee", "config_hash": "abc"}


@pytest.mark.parametrize(
    "remote,force,expected",
    [
        (Remote(exists=False), False, "upload"),
        (Remote(exists=True, files=(".gitattributes",)), False, "upload"),  # a freshly created, empty repo
        (Remote(exists=True, branch_exists=False), False, "upload"),  # a new branch overwrites nothing
        (Remote(exists=True, files=("README.md", "data/train-00000-of-00001.parquet"), meta=LOCAL), False, "skip"),
        (Remote(exists=True, files=("README.md",), meta=LOCAL), True, "upload"),
        (Remote(exists=True, files=("README.md",), meta={"content_hash": "other"}), True, "upload"),
        (Remote(exists=True, files=("README.md",), meta={"content_hash": "other", "config_hash": "x"}), False, None),
        (Remote(exists=True, files=(".gitattributes", "train.csv")), False, None),  # someone else's dataset
    ],
)
def test_overwrite_guard(remote, force, expected):
    if expected is None:
        with pytest.raises(StageError, match=r"someone/ds already holds .*pass --force to overwrite") as err:
            decide(remote, LOCAL, "someone/ds", force)
        assert ("not made by r1distill" in str(err.value)) == (remote.meta is None)
    else:
        assert decide(remote, LOCAL, "someone/ds", force) == expected


class StubHub:
    """A few Hub API routes on 127.0.0.1 (repo info, repo and branch creation), backed by a dict of repos."""

    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo_id -> {"branches": {name: {"files": [...], "card": {...}}}}
        self.requests: list[tuple[str, str, dict]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict, error_code: str | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                hub.requests.append(("GET", self.path, dict(self.headers)))
                m = re.match(r"/api/datasets/([^/]+/[^/]+)/revision/([^/?]+)", self.path)
                repo = hub.repos.get(m.group(1)) if m else None
                if repo is None:
                    return self._reply(404, {"error": "Repository not found"}, "RepoNotFound")
                branch = repo["branches"].get(m.group(2))
                if branch is None:
                    return self._reply(404, {"error": "Invalid rev id"}, "RevisionNotFound")
                siblings = [{"rfilename": f} for f in branch["files"]]
                info = {"id": m.group(1), "sha": "0" * 40, "private": True, "siblings": siblings}
                if branch.get("card"):
                    info["cardData"] = branch["card"]
                self._reply(200, info)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                hub.requests.append(("POST", self.path, dict(self.headers)))
                if self.path == "/api/repos/create":
                    repo_id = f"{body['organization']}/{body['name']}"
                    hub.repos[repo_id] = {
                        "visibility": body.get("visibility"),
                        "branches": {"main": {"files": [".gitattributes"]}},
                    }
                    return self._reply(200, {"url": f"{hub.url}/datasets/{repo_id}"})
                m = re.match(r"/api/datasets/([^/]+/[^/]+)/branch/([^/?]+)", self.path)
                if m and m.group(1) in hub.repos:
                    hub.repos[m.group(1)]["branches"][m.group(2)] = {"files": [".gitattributes"]}
                    return self._reply(200, {})
                self._reply(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import filter_repo_objects

    stub = StubHub()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest set it before huggingface_hub was imported
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    stub.uploads = []

    def fake_upload_folder(self, *, repo_id, folder_path, repo_type, revision, allow_patterns, delete_patterns, **kw):
        """Stands in for the real upload: records what would be sent and commits it to the stub's state."""
        from huggingface_hub import DatasetCard

        files = sorted(
            filter_repo_objects(
                [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()],
                allow_patterns=allow_patterns,
            )
        )
        stub.uploads.append({"repo_id": repo_id, "revision": revision, "repo_type": repo_type, "files": files,
                             "delete_patterns": delete_patterns, "token": self.token, **kw})  # fmt: skip
        card = DatasetCard.load(Path(folder_path) / "README.md").data.to_dict()
        stub.repos[repo_id]["branches"][revision] = {"files": [".gitattributes", *files], "card": card}
        return type("CommitInfo", (), {"commit_url": f"{stub.url}/datasets/{repo_id}/commit/1"})()

    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    yield stub
    stub.close()


def test_publish_creates_repo_and_branch_then_skips_identical(tmp_path, built, hub):
    """HfApi.upload_folder is replaced (see the `hub` fixture); every other Hub call is real, to the stub."""
    before = snapshot(built)
    cfg = PublishConfig(repo_id="someone/r1-data", revision="v1", private=True, endpoint=hub.url)
    receipt = publish.run(cfg, built, tmp_path / "publish")
    (up,) = hub.uploads
    assert up["files"] == sorted(["README.md", *(f["name"] for f in read_manifest(built)["parquet_files"])])
    assert (up["repo_id"], up["revision"], up["repo_type"]) == ("someone/r1-data", "v1", "dataset")
    assert up["token"] == TOKEN and hub.repos["someone/r1-data"]["visibility"] == "private"
    assert up["delete_patterns"] == ["data/*.parquet"]
    assert "v1" in hub.repos["someone/r1-data"]["branches"]
    assert hub.requests and all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h in hub.requests)
    assert receipt["action"] == "upload" and receipt["content_hash"] == read_manifest(built)["content_hash"]
    assert read_manifest(tmp_path / "publish") == receipt
    assert TOKEN not in (tmp_path / "publish" / "manifest.json").read_text()
    again = publish.run(cfg, built, tmp_path / "publish2")  # the remote card now carries the same content hash
    assert again["action"] == "skip" and len(hub.uploads) == 1
    assert publish.summary(again) == f"someone/r1-data@v1: already there (content {receipt['content_hash']})"
    assert snapshot(built) == before


def test_publish_refuses_a_different_dataset_without_force(tmp_path, built, hub):
    """HfApi.upload_folder is replaced (see the `hub` fixture); the guard reads the remote card through the real
    client."""
    other = {"license": "mit", "r1distill": {"content_hash": "0123456789abcdef", "config_hash": "feedbeef"}}
    hub.repos["someone/r1-data"] = {"branches": {"main": {"files": [".gitattributes", "README.md"], "card": other}}}
    cfg = PublishConfig(repo_id="someone/r1-data", endpoint=hub.url)
    with pytest.raises(StageError, match="content hash 0123456789abcdef.*pass --force") as err:
        publish.run(cfg, built, tmp_path / "publish")
    assert TOKEN not in str(err.value)
    assert not hub.uploads and not (tmp_path / "publish" / "manifest.json").exists()
    cfg.force = True
    assert publish.run(cfg, built, tmp_path / "publish")["action"] == "upload"
    assert len(hub.uploads) == 1
    card = hub.repos["someone/r1-data"]["branches"]["main"]["card"]
    assert card["r1distill"]["content_hash"] == read_manifest(built)["content_hash"]


def test_force_flag_reaches_the_config(tmp_path, built, hub):
    """`--force` on the command line both reruns the stage and allows the overwrite (upload_folder replaced)."""
    other = {"r1distill": {"content_hash": "0123456789abcdef"}}
    hub.repos["someone/r1-data"] = {"branches": {"main": {"files": ["README.md"], "card": other}}}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"run_dir: {tmp_path / 'run'}\npublish:\n  repo_id: someone/r1-data\n  endpoint: {hub.url}\n")
    assert publish.main(["-c", str(recipe), "-i", str(built)]) == 2 and not hub.uploads
    assert publish.main(["-c", str(recipe), "-i", str(built), "--force"]) == 0 and len(hub.uploads) == 1


def test_connection_dropped_mid_call_and_bad_endpoint_are_clean_errors(tmp_path, built, monkeypatch):
    """The port answers (so the reachability probe passes) but every connection is closed at once."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    listener = socket.create_server(("127.0.0.1", 0))

    def drop_all():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(StageError, match=rf"reading someone/r1-data at {endpoint} failed: .*network") as err:
            publish.run(PublishConfig(repo_id="someone/r1-data", endpoint=endpoint), built, tmp_path / "publish")
        assert TOKEN not in str(err.value)
    finally:
        listener.close()
    with pytest.raises(StageError, match="'huggingface.co': not an http"):
        publish.run(PublishConfig(repo_id="a/b", endpoint="huggingface.co"), built, tmp_path / "publish")
    assert not (tmp_path / "publish" / "manifest.json").exists()


def test_stray_or_edited_shards_are_not_published(tmp_path, built):
    """Checked before any token or network is needed: what would be uploaded is exactly what build wrote."""
    copy = tmp_path / "build"
    shutil.copytree(built, copy)
    shard = sorted((copy / "data").glob("train-*.parquet"))[0]
    stray = copy / "data" / "train-00009-of-00010.parquet"
    stray.write_bytes(shard.read_bytes())
    with pytest.raises(StageError, match=f"{stray}: is not in manifest.json"):
        publish.run(PublishConfig(repo_id="a/b"), copy, tmp_path / "publish")
    stray.unlink()
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(StageError, match=f"{shard}: sha256 differs from manifest.json"):
        publish.run(PublishConfig(repo_id="a/b"), copy, tmp_path / "publish")
    assert not (tmp_path / "publish").exists()
