"""publish: push a built dataset folder to the Hugging Face Hub as a dataset repo.

    r1distill publish -c pipelines/quickstart.yaml [--force]      (the recipe's `publish:` section; input RUN_DIR/build)

The token comes from `HF_TOKEN` or the standard `hf auth login`; it is handed to huggingface_hub and never logged or
written. Before uploading, the remote card's `r1distill.content_hash` is compared with the local one: an identical
dataset is not uploaded again, and a different dataset (or a repo not made by r1distill) is only overwritten with
`--force`. Every parquet shard must match the build manifest's sha256 (no stray or edited file goes out). Without
network the stage fails within seconds, naming the endpoint. The upload is one call,
`HfApi.upload_folder`, of `README.md` and `data/*.parquet`; nothing is written into the build folder. A small receipt
(`manifest.json`: repo, revision, commit) goes to the publish output folder, so `r1distill run` skips a finished push.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from r1distill.core.stage import Stage
from r1distill.core.store import StageError, read_manifest, sha256_file

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
UPLOAD_PATTERNS = ["README.md", "data/*.parquet"]
# Files any new Hub repo starts with: their presence alone does not make a repo "another dataset".
EMPTY_REPO_FILES = {".gitattributes"}


@dataclass
class PublishConfig:
    """The recipe's `publish:` section. `endpoint` defaults to `HF_ENDPOINT`, then huggingface.co. `force` (or the
    `--force` flag) allows overwriting a repo that holds a different dataset."""

    HASH_EXCLUDE = ("force", "timeout_s")

    repo_id: str = ""
    private: bool = True
    revision: str = "main"
    commit_message: str | None = None
    endpoint: str | None = None
    timeout_s: float = 10.0
    force: bool = False


Config = PublishConfig


@dataclass
class Remote:
    """What the Hub holds at the target: files at the revision and the card's `r1distill:` metadata.
    `exists` is False for a repo that does not exist; `branch_exists` False for a revision still to be created."""

    exists: bool
    branch_exists: bool = True
    files: tuple[str, ...] = ()
    meta: dict[str, Any] | None = None


def local_meta(build_dir: Path) -> dict[str, Any]:
    """The `r1distill:` block of the local card (config and content hash), or an error saying to rebuild."""
    from huggingface_hub import DatasetCard

    card_path = build_dir / "README.md"
    if not card_path.exists():
        raise StageError(f"{card_path}: no dataset card; rerun `r1distill build --force`")
    meta = DatasetCard.load(card_path).data.to_dict().get("r1distill") or {}
    if not meta.get("content_hash"):
        raise StageError(f"{card_path}: card has no r1distill.content_hash; rerun `r1distill build --force`")
    if not list((build_dir / "data").glob("*.parquet")):
        raise StageError(f"{build_dir}/data: no parquet shards; rerun `r1distill build --force`")
    return meta


def check_files(build_dir: Path, build: dict[str, Any], local: dict[str, Any]) -> None:
    """What would be uploaded is exactly what build wrote: the card's and manifest's hashes agree, and every parquet
    file is listed in the manifest with its sha256 (a stray or edited shard would otherwise go to the Hub)."""
    if build.get("content_hash") != local["content_hash"]:
        raise StageError(f"{build_dir}: README.md and manifest.json describe different builds; rerun build --force")
    listed = {f["name"]: f["sha256"] for f in build.get("parquet_files", [])}
    on_disk = {f"data/{p.name}" for p in (build_dir / "data").glob("*.parquet")}
    for name in sorted(on_disk ^ set(listed)):
        state = "is not in manifest.json" if name in on_disk else "is missing"
        raise StageError(f"{build_dir / name}: {state}; rerun `r1distill build --force`")
    for name, digest in listed.items():
        if sha256_file(build_dir / name) != digest:
            raise StageError(f"{build_dir / name}: sha256 differs from manifest.json; rerun `r1distill build --force`")


def decide(remote: Remote, local: dict[str, Any], repo_id: str, force: bool) -> str:
    """The action for this remote: `upload`, or `skip` when the very same dataset is there already.

    A remote holding a different dataset (or files not made by r1distill) is an error unless `force`."""
    if not remote.exists or not remote.branch_exists or set(remote.files) <= EMPTY_REPO_FILES:
        return "upload"
    theirs = remote.meta or {}
    if theirs.get("content_hash") == local["content_hash"]:
        return "upload" if force else "skip"
    if force:
        log.warning(
            "publish: overwriting %s (remote content %s) because of --force", repo_id, theirs.get("content_hash")
        )
        return "upload"
    what = (
        f"a different r1distill dataset (content hash {theirs.get('content_hash')}, config hash "
        f"{theirs.get('config_hash')}; local {local['content_hash']}, config {local.get('config_hash')})"
        if theirs
        else f"files not made by r1distill ({', '.join(sorted(remote.files)[:5])})"
    )
    raise StageError(f"{repo_id} already holds {what}; pass --force to overwrite it, or choose another publish.repo_id")


def endpoint_of(cfg: PublishConfig) -> str:
    return (cfg.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def check_reachable(endpoint: str, timeout: float) -> None:
    """Fail fast, with a message that says why, when the Hub cannot be reached (offline mode, no route, refused).

    Name lookup runs in a daemon thread so that a resolver with no network cannot hold the stage past `timeout`.
    """
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or constants.is_offline_mode():
        raise StageError("HF_HUB_OFFLINE is set: publishing needs the network; unset it on a machine that can reach "
                         f"{endpoint}")  # fmt: skip
    url = urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise StageError(f"publish.endpoint / HF_ENDPOINT {endpoint!r}: not an http(s) URL, e.g. {DEFAULT_ENDPOINT}")
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # behind a proxy a direct connection proves nothing; the first Hub call reports instead
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result.append(None)
        except OSError as e:
            result.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    error = result[0] if result else TimeoutError(f"no answer within {timeout:g} s")
    if error is not None:
        reason = getattr(error, "strerror", None) or error
        raise StageError(
            f"cannot reach the Hub at {endpoint} ({reason}); publish needs network access: run it on a "
            "machine that can reach the Hub, or set HF_ENDPOINT to a reachable mirror"
        )


def get_token() -> str:
    """HF_TOKEN or the token saved by `hf auth login`; never logged, only passed to huggingface_hub."""
    from huggingface_hub import get_token as hub_token

    token = hub_token()
    if not token:
        raise StageError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return token


def remote_state(api, repo_id: str, revision: str, timeout: float) -> Remote:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type="dataset", revision=revision, timeout=timeout)
    except RevisionNotFoundError:
        return Remote(exists=True, branch_exists=False)
    except RepositoryNotFoundError:
        return Remote(exists=False)
    files = tuple(s.rfilename for s in (info.siblings or []))
    card = info.card_data.to_dict() if getattr(info, "card_data", None) else {}
    return Remote(exists=True, files=files, meta=card.get("r1distill"))


def _hub_call(what: str, endpoint: str, fn, *args, **kwargs):
    """One Hub call; its failures become one-line errors (the token never appears in them)."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return fn(*args, **kwargs)
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        hint = " (check that the token has write access)" if status in (401, 403) else ""
        raise StageError(f"{what} at {endpoint} failed: HTTP {status}{hint}: {str(e).splitlines()[0]}") from None
    except (OSError, httpx.HTTPError) as e:  # connection refused/reset, timeouts, DNS
        raise StageError(f"{what} at {endpoint} failed: {e}; publish needs network access to the Hub") from None
    except ValueError as e:  # a reply that is not the Hub's JSON
        raise StageError(f"{what} at {endpoint}: unexpected reply ({e}); is this a Hugging Face Hub?") from None


class PublishStage(Stage):
    name, Config, upstream = "publish", PublishConfig, "build"

    def validate(self, cfg: PublishConfig) -> None:
        from huggingface_hub.utils import validate_repo_id

        if not cfg.repo_id:
            raise StageError("publish.repo_id: missing; set it to the dataset repo, e.g. your-name/r1-distill-math")
        try:
            validate_repo_id(cfg.repo_id)
        except ValueError as e:
            raise StageError(f"publish.repo_id {cfg.repo_id!r}: {e}") from None

    def prepare(self, cfg: PublishConfig, build_dir: Path, output_dir: Path, **kw: Any) -> tuple[dict, dict]:
        """What would be uploaded, checked before anything is written: (build manifest, local metadata)."""
        if output_dir.resolve() == build_dir.resolve():
            raise StageError("publish: --output must not be the build folder (publish never writes there)")
        build = read_manifest(build_dir) or {}
        local = local_meta(build_dir)
        check_files(build_dir, build, local)
        return build, local

    def work(self, cfg: PublishConfig, build_dir: Path, output_dir: Path, prepared, api=None, **kw) -> dict[str, Any]:
        """Push the build folder to `cfg.repo_id`; the manifest is the receipt. `api` defaults to
        `huggingface_hub.HfApi` on the configured endpoint with the user's token."""
        build, local = prepared
        endpoint = endpoint_of(cfg)
        if api is None:
            from huggingface_hub import HfApi

            token = get_token()
            check_reachable(endpoint, cfg.timeout_s)
            api = HfApi(endpoint=endpoint, token=token, library_name="r1distill")
        remote = _hub_call(
            "reading " + cfg.repo_id, endpoint, remote_state, api, cfg.repo_id, cfg.revision, cfg.timeout_s
        )
        action = decide(remote, local, cfg.repo_id, cfg.force)
        commit_url = None
        if action == "skip":
            log.info("publish: %s@%s already holds this dataset (content %s); nothing to upload",
                     cfg.repo_id, cfg.revision, local["content_hash"])  # fmt: skip
        else:
            commit_url = _upload(cfg, api, endpoint, remote, build_dir, local)
        return {
            "repo_id": cfg.repo_id,
            "revision": cfg.revision,
            "private": cfg.private,
            "endpoint": endpoint,
            "action": action,
            "commit_url": commit_url,
            "content_hash": local["content_hash"],
            "counts": build.get("counts", {}),
        }

    def summary(self, manifest: dict[str, Any]) -> str:
        done = "uploaded" if manifest["action"] == "upload" else "already there"
        return f"{manifest['repo_id']}@{manifest['revision']}: {done} (content {manifest['content_hash']})"


def _upload(cfg: PublishConfig, api, endpoint: str, remote, build_dir: Path, local: dict[str, Any]) -> str:
    """Create the repo/branch where missing, then one commit: README.md + data/*.parquet; remote shards of an
    earlier build that are gone locally go too. Returns the commit URL."""
    if not remote.exists:
        _hub_call("creating " + cfg.repo_id, endpoint, api.create_repo, cfg.repo_id, repo_type="dataset",
                  private=cfg.private, exist_ok=True)  # fmt: skip
    if cfg.revision != "main" and (not remote.exists or not remote.branch_exists):
        _hub_call("creating branch " + cfg.revision, endpoint, api.create_branch, cfg.repo_id,
                  branch=cfg.revision, repo_type="dataset", exist_ok=True)  # fmt: skip
    message = cfg.commit_message or f"r1distill build {local['content_hash']} (config {local.get('config_hash')})"
    info = _hub_call(
        f"uploading to {cfg.repo_id}",
        endpoint,
        api.upload_folder,
        repo_id=cfg.repo_id,
        folder_path=str(build_dir),
        repo_type="dataset",
        revision=cfg.revision,
        allow_patterns=UPLOAD_PATTERNS,
        delete_patterns=["data/*.parquet"],
        commit_message=message,
    )
    commit_url = str(getattr(info, "commit_url", info))
    log.info("publish: %s -> %s@%s (%s)", build_dir, cfg.repo_id, cfg.revision, commit_url)
    return commit_url


STAGE = PublishStage()
run, summary = STAGE.run, STAGE.summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--force" in argv:  # --force also means: overwrite a different dataset on the Hub
        argv.append("publish.force=true")
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
