import subprocess
import sys
from pathlib import Path

import pytest

from r1distill.cli import TOOLS
from r1distill.core.registry import STAGES

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "r1distill", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_help_lists_every_stage_in_pipeline_order():
    proc = cli("--help")
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert listed == [*STAGES, *TOOLS]
    assert listed[:4] == ["generate", "verify", "filter", "build"] and listed.index("sft") < listed.index("evaluate")
    assert all(len(line.split()) > 1 for line in proc.stdout.splitlines() if line.startswith("  "))  # each has help


@pytest.mark.parametrize("command", [*STAGES, *TOOLS])
def test_every_command_has_its_own_help(command):
    """Each listed command resolves to a module whose own parser answers --help (no metavars like FLAG_X.Y)."""
    proc = cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"r1distill {command}" in proc.stdout and "FLAG_" not in proc.stdout


def test_unknown_command_exits_2():
    proc = cli("generat")
    assert proc.returncode == 2 and "unknown command 'generat'" in proc.stderr


def test_run_dry_run_validates_quickstart_and_prints_plan(tmp_path):
    proc = cli("run", str(REPO / "pipelines/quickstart.yaml"), "--dry-run", f"run_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert f"generate  to run  - -> {tmp_path}/generate" in proc.stdout
    assert not (tmp_path / "generate").exists()  # a dry run writes nothing


def test_run_reports_config_errors_by_key(tmp_path):
    proc = cli("run", str(REPO / "pipelines/quickstart.yaml"), "--dry-run", "generate.nn=3")
    assert proc.returncode == 2 and "unknown key 'nn'" in proc.stderr and "pipelines/quickstart.yaml" in proc.stderr
