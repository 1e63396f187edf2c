"""`r1distill report RUN_DIR` on a real quickstart run: the page shows the run's own numbers, every chart it links
is a real PNG, stages that did not run say so, and the page renders in a real headless browser (Debian chromium),
whose screenshot is kept as a test artifact ($R1DISTILL_ARTIFACTS, default tests/artifacts/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from r1distill.core.config import load_recipe
from r1distill.core.store import StageError, read_manifest
from r1distill.report.page import funnel_steps, write_report

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("R1DISTILL_ARTIFACTS") or REPO / "tests" / "artifacts")
STAGES = ("generate", "verify", "filter", "build", "sft", "evaluate")


def r1distill(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1distill", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(quickstart_run) -> Path:
    """The README's quickstart command, run once per session (conftest), every stage included."""
    return quickstart_run[0]


@pytest.fixture(scope="module")
def page(run_dir) -> Path:
    proc = r1distill("report", str(run_dir), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = Path(proc.stdout.strip().splitlines()[-1])
    assert index == run_dir / "report" / "index.html" and index.exists()
    return index


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def parse(index: Path) -> tuple[list[str], str]:
    p = _Page()
    p.feed(index.read_text(encoding="utf-8"))
    return p.images, " ".join(" ".join(p.text).split())


def test_page_shows_the_runs_own_numbers(run_dir, page):
    images, text = parse(page)
    m = {s: read_manifest(run_dir / s) for s in STAGES}
    assert all(m.values()), {s: bool(v) for s, v in m.items()}
    gen, ver, fil = m["generate"]["counts"], m["verify"]["counts"], m["filter"]
    assert f"generated ({gen['prompts']} prompts x n={gen['n']})" in text
    for reason, n in ver["dropped"].items():  # every drop reason with its count, verify's and the filter's
        assert re.search(rf"verify: {reason} {n} ", text), reason
    for reason, n in fil["reasons"].items():
        assert re.search(rf"filter: {reason} {n} ", text) and f"filter/rejected/{reason}/" in text, reason
    assert f"{fil['counts']['kept']} kept of {fil['counts']['in']} after the filter" in text
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    for name, b in report["benchmarks"].items():
        assert f"{100 * b['pass@1']:.1f}% {name} pass@1" in text
    assert f"final train loss ({m['sft']['steps']} steps)" in text
    for stage in STAGES:  # provenance: each stage's exact command and config hash
        assert m[stage]["config_hash"] in text and m[stage]["command"].split()[-1] in text
    ran = {s for s in ("sft", "rl") if read_manifest(run_dir / s)}
    for stage in ("sft", "rl"):
        assert (f"{stage}: not run" in text) == (stage not in ran), stage
    # every linked chart is a PNG that exists beside the page (relative links), none missing
    from PIL import Image

    assert {"funnel.png", "lengths_num_tokens.png", "sft_curve.png", "eval.png"} <= set(images)
    for src in images:
        assert "/" not in src
        with Image.open(page.parent / src) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 150


def test_funnel_adds_up_from_generated_samples_to_dataset_rows(run_dir):
    m = {s: read_manifest(run_dir / s) for s in STAGES}
    steps = funnel_steps(m)
    assert steps[0]["remaining"] == m["generate"]["counts"]["samples"]
    for before, after in zip(steps, steps[1:], strict=False):
        assert after["remaining"] == before["remaining"] - after.get("dropped", 0)
    after_verify = [s for s in steps if s["stage"] == "verify"][-1]["remaining"]
    assert after_verify == m["verify"]["counts"]["kept"] == m["filter"]["counts"]["in"]
    assert steps[-1]["remaining"] == sum(m["build"]["counts"].values())


def test_page_renders_in_headless_chromium(page):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("Debian's chromium is not installed (tests/setup_system.sh installs it as root)")
    from PIL import Image, ImageStat

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_quickstart.png"
    shot.unlink(missing_ok=True)
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1280,2400", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.exists(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1280, 2400)
        rgb = im.convert("RGB")
        assert max(ImageStat.Stat(rgb).stddev) > 20  # not a blank page
        # The funnel chart's green bars are on screen: the browser loaded the PNGs the page links to.
        pixels = np.asarray(rgb, dtype=np.int16)
        green = int((np.abs(pixels - np.array([0x2F, 0x7D, 0x4F])).max(axis=2) < 12).sum())
        assert green > 2000, green


def test_stages_that_did_not_run_say_so(run_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run_dir / "generate", partial / "generate")
    index = write_report(partial)
    images, text = parse(index)
    for stage in ("verify", "filter", "build", "sft", "evaluate"):
        assert f"{stage}: not run" in text
    assert images == ["funnel.png"]
    assert sorted(p.name for p in partial.iterdir()) == ["generate", "report"]  # no temp folder left behind


def test_a_rerun_replaces_the_report_whole(run_dir, page, tmp_path):
    stale = page.parent / "stale.png"
    stale.write_bytes(b"not from this render")
    index = write_report(run_dir)
    assert index == page and not stale.exists() and (page.parent / "funnel.png").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".report")]


def test_bad_run_folders_fail_with_one_line(tmp_path):
    with pytest.raises(StageError, match="no such run folder"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty" / "generate").mkdir(parents=True)
    proc = r1distill("report", str(tmp_path / "empty"), timeout=120)
    assert proc.returncode == 2 and "no finished stage" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_dry_run_of_the_finished_run_shows_every_stage_done_and_measured_figures(run_dir):
    """The plan of a run that finished: nothing left to do, and the estimate uses what generate measured."""
    proc = r1distill("run", "pipelines/quickstart.yaml", f"run_dir={run_dir}", "--dry-run", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in load_recipe(REPO / "pipelines" / "quickstart.yaml").stages():
        assert re.search(rf"^{stage}\s+done\s", proc.stdout, re.M), stage
    samples = read_manifest(run_dir / "generate")["counts"]["samples"]
    assert re.search(rf"^generate\s.*measured: {samples} samples", proc.stdout, re.M)
