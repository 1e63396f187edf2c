"""Print the exact requirement pyproject.toml pins for each named package (`torch` -> `torch==2.13.0`).

The Dockerfiles install through this script, so every version in an image comes from pyproject.toml and nowhere
else; tests/test_docker_pins.py checks that they do. Standard library only: it runs before anything is installed.

    python3 docker/pins.py torch vllm          one line per package, from the dependencies or any extra
    python3 docker/pins.py --extra gpu         every requirement of an extra (--deps: the core dependencies)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements(pyproject: Path = PYPROJECT) -> dict[str, list[str]]:
    """{"": dependencies, extra name: its requirements} as written in pyproject.toml."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return {"": project.get("dependencies", []), **project.get("optional-dependencies", {})}


def name_of(requirement: str) -> str:
    """The normalised distribution name of a requirement string ('Flash_Attn[x]==2' -> 'flash-attn')."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def exact_pins(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """{name: version} for every `name==version` requirement, across dependencies and extras."""
    pins: dict[str, str] = {}
    for reqs in requirements(pyproject).values():
        for req in reqs:
            m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*", req)
            if m:
                pins[name_of(req)] = m.group(3)
    return pins


def main(argv: list[str]) -> int:
    if argv == ["--deps"]:
        print("\n".join(requirements()[""]))
        return 0
    if argv[:1] == ["--extra"]:
        reqs = requirements()
        if len(argv) != 2 or argv[1] not in reqs:
            print(f"pins.py: unknown extra; pyproject.toml has: {', '.join(k for k in reqs if k)}", file=sys.stderr)
            return 2
        print("\n".join(reqs[argv[1]]))
        return 0
    pins = exact_pins()
    missing = [n for n in argv if name_of(n) not in pins]
    if missing or not argv:
        print(f"pins.py: {', '.join(missing) or 'no package named'}: not pinned (name==version) in {PYPROJECT}",
              file=sys.stderr)  # fmt: skip
        return 2
    print("\n".join(f"{name_of(n)}=={pins[name_of(n)]}" for n in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
