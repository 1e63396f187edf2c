"""The images in docker/ install exactly the versions pyproject.toml pins: each Dockerfile names packages through
docker/pins.py (which reads pyproject.toml), never a version of its own, and any version it does spell out (a
literal `name==x`, an `ARG NAME_VERSION=x`, the Makefile the CPU image runs) must equal pyproject's.

Building the images needs a Docker daemon and CUDA base images, neither of which exists on the machines that run
these tests: what is checked here is the text of the files and the pins script they call, run for real.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")
LITERAL_PIN = re.compile(r"(?<![\w/.-])([A-Za-z][A-Za-z0-9_.-]*)(?:\[[^\]]*\])?==([0-9][^\s\"'\\;,)]*)")
ARG_VERSION = re.compile(r"^ARG\s+([A-Z0-9_]+)_VERSION=(\S+)", re.M)
PINS_CALL = re.compile(r"python3?\s+docker/pins\.py\s+([^)>\n]*)")

sys.path.insert(0, str(DOCKER))
import pins  # noqa: E402  (docker/pins.py: the one reader of pyproject's pins)


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def mismatches(text: str, project_pins: dict[str, str], where: str) -> list[str]:
    """Every version spelled out in `text` that differs from the project's pin for that package (or is no pin)."""
    out = []
    for name, version in LITERAL_PIN.findall(text):
        key = pins.name_of(name)
        if key in project_pins and project_pins[key] != version:
            out.append(f"{where}: {name}=={version}, pyproject.toml pins {project_pins[key]}")
        elif key not in project_pins:
            out.append(f"{where}: {name}=={version} is pinned here but not in pyproject.toml")
    for arg, version in ARG_VERSION.findall(text):
        if arg == "PYTHON":
            continue
        key = arg.lower().replace("_", "-")
        if project_pins.get(key) != version:
            out.append(f"{where}: ARG {arg}_VERSION={version}, pyproject.toml pins {project_pins.get(key)}")
    return out


MODULE_CALL = re.compile(r"(?:python3?\s+-m|--module|from)\s+(r1distill[\w.]*)")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_module_an_image_runs_exists(dockerfile):
    """Every `python -m r1distill.X`, `--module r1distill.X` or `from r1distill.X import` in an image must name a
    module of the package as it is now: a moved module would otherwise only fail inside a built container."""
    import importlib.util

    modules = set(MODULE_CALL.findall(dockerfile.read_text()))
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"{dockerfile.name} runs {module}, which does not exist"
    if dockerfile.name == "Dockerfile.train":
        assert "r1distill.train.sft" in modules  # the launch line the training image documents


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_versions_equal_pyproject(dockerfile):
    text = dockerfile.read_text()
    assert mismatches(text, pins.exact_pins(), dockerfile.name) == []
    for version in re.findall(r"^ARG\s+PYTHON_VERSION=(\S+)", text, re.M):
        assert f"{version}.0" in SpecifierSet(project()["requires-python"]), (dockerfile.name, version)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_package_an_image_asks_pins_py_for_is_pinned_in_pyproject(dockerfile):
    calls = PINS_CALL.findall(dockerfile.read_text())
    extras = {k for k in pins.requirements() if k}
    assert calls, f"{dockerfile.name} installs nothing through docker/pins.py"
    for call in map(str.strip, calls):
        if call.startswith("--extra"):
            assert call.split()[1] in extras, f"{dockerfile.name}: pyproject.toml has no extra {call.split()[1]!r}"
        elif call != "--deps":
            for name in call.split():
                proc = subprocess.run([sys.executable, str(DOCKER / "pins.py"), name], capture_output=True, text=True)
                assert proc.returncode == 0, (
                    f"{dockerfile.name} installs {name} through docker/pins.py, but pyproject.toml does not pin it "
                    f"(name==version): {proc.stderr.strip()}"
                )
                assert proc.stdout.strip() == f"{pins.name_of(name)}=={pins.exact_pins()[pins.name_of(name)]}"


def test_the_cpu_image_installs_through_the_makefile_whose_pins_agree():
    """Dockerfile.cpu runs `make install`; the versions the Makefile spells out must be pyproject's."""
    assert "make install" in (DOCKER / "Dockerfile.cpu").read_text()
    makefile = (REPO / "Makefile").read_text()
    project_pins = pins.exact_pins()
    shared = [(n, v) for n, v in LITERAL_PIN.findall(makefile) if pins.name_of(n) in project_pins]
    assert ("torch", project_pins["torch"]) in shared  # the one a wrong copy would hurt most (CUDA wheels)
    assert all(project_pins[pins.name_of(n)] == v for n, v in shared), shared


def test_the_checker_catches_a_drifted_version():
    project_pins = {"torch": "2.13.0", "vllm": "0.31.0"}
    drifted = 'RUN pip install "torch==2.12.0" vllm==0.31.0\nARG VLLM_VERSION=0.30.1\nRUN pip install foo==1.0\n'
    found = mismatches(drifted, project_pins, "Dockerfile.x")
    assert len(found) == 3 and "torch==2.12.0" in found[0] and "VLLM_VERSION=0.30.1" in found[2]
    assert "foo==1.0 is pinned here but not in pyproject.toml" in found[1]


def test_pins_py_prints_pyproject_pins_and_refuses_unpinned_names():
    torch_pin = next(r for r in project()["dependencies"] if r.startswith("torch=="))
    ok = subprocess.run([sys.executable, str(DOCKER / "pins.py"), "Torch"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == torch_pin
    gpu = subprocess.run([sys.executable, str(DOCKER / "pins.py"), "--extra", "gpu"], capture_output=True, text=True)
    assert gpu.stdout.split() == project()["optional-dependencies"]["gpu"]
    bad = subprocess.run([sys.executable, str(DOCKER / "pins.py"), "no-such-pkg"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no-such-pkg: not pinned" in bad.stderr
