"""The sandbox must contain hostile programs, and the grading process must survive every one of them.

These run real programs under the strongest isolation this machine offers (bubblewrap + uid drop as root in CI;
`make test` installs bubblewrap). Checks that need namespaces skip, saying so, where only weaker levels exist.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import pytest

from r1distill.grading.sandbox import Limits, isolation_level, run_python

REPO = Path(__file__).resolve().parents[1]
LEVEL = isolation_level()
needs_bwrap = pytest.mark.skipif(not LEVEL.startswith("bwrap"), reason=f"bubblewrap unusable here (level {LEVEL})")
needs_uid = pytest.mark.skipif("uid" not in LEVEL, reason=f"not root: no uid drop, fork bombs not contained ({LEVEL})")


def _procs_with(token: str, settle_s: float = 5.0) -> list[int]:
    """Pids whose command line contains `token` (how we look for anything a sandboxed run left behind), after
    giving SIGKILLed processes up to `settle_s` to finish dying (slow on a loaded machine)."""
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if token in cmdline:
                    found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_strongest_level_is_used_and_recorded():
    r = run_python("import os; print(os.getuid())")
    assert r.status == "ok" and r.isolation == LEVEL
    if os.geteuid() == 0 and "uid" in LEVEL:
        assert int(r.stdout) != 0  # never runs as root


def test_stdin_and_nonzero_exit():
    assert run_python("print(input()[::-1])", "abc\n").stdout == "cba\n"
    r = run_python("import sys; sys.exit(3)")
    assert (r.status, r.returncode) == ("runtime_error", 3)


def test_infinite_loop_times_out():
    start = time.monotonic()
    r = run_python("while True:\n    pass\n", limits=Limits(timeout_s=1))
    assert r.status == "timeout" and time.monotonic() - start < 5
    busy_threads = "import threading\ndef spin():\n    while True:\n        pass\n" + (
        "for _ in range(4):\n    threading.Thread(target=spin).start()\n"
    )
    assert run_python(busy_threads, limits=Limits(timeout_s=1)).status == "timeout"


@needs_uid
def test_fork_bomb_is_contained_and_leaves_nothing():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = run_python(bomb, limits=Limits(timeout_s=2, nproc=32))
    assert r.status in ("timeout", "runtime_error")
    assert _procs_with("/work/main.py") == []
    # the machine still runs programs (and this process can still fork)
    assert run_python("print('alive')").stdout == "alive\n"


def test_memory_bomb_fails_inside_the_sandbox():
    r = run_python("x = bytearray(2 * 1024**3)\nprint('allocated')", limits=Limits(memory_mb=256))
    assert r.status == "memory_limit" and "MemoryError" in r.stderr and "allocated" not in r.stdout


@needs_bwrap
def test_writes_outside_the_work_dir_do_not_reach_the_host(tmp_path):
    marker = f"r1d-escape-{random.getrandbits(48):x}"
    targets = [REPO / marker, Path("/tmp") / marker, Path.home() / marker, tmp_path / marker]
    code = (
        "import sys\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('wrote', path)\n"
        "    except OSError as e:\n"
        "        print('denied', path, type(e).__name__)\n"
        "open('local.txt', 'w').write('fine')\n"  # the private work dir is writable
        "print(open('local.txt').read())\n"
    )
    r = run_python(code)
    assert r.status == "ok" and r.stdout.rstrip().endswith("fine")
    assert [t for t in targets if t.exists()] == []


@needs_bwrap
def test_project_and_home_are_invisible():
    secret = (REPO / "pyproject.toml").read_text()[:40]
    code = (
        "import os\n"
        f"for path in [{str(REPO / 'pyproject.toml')!r}, '/etc/passwd', '/root', os.path.expanduser('~/.bashrc')]:\n"
        "    try:\n"
        "        print('READ', path, open(path).read()[:40] if os.path.isfile(path) else os.listdir(path))\n"
        "    except OSError as e:\n"
        "        print('hidden', path, type(e).__name__)\n"
    )
    r = run_python(code)
    assert r.status == "ok" and "READ" not in r.stdout and secret not in r.stdout
    assert r.stdout.count("hidden") == 4


@needs_bwrap
def test_no_network_even_to_loopback():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print('blocked', type(e).__name__)\n"
        )
        r = run_python(code)
        assert r.status == "ok" and r.stdout.startswith("blocked")
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever reached the listener


def test_killing_the_parent_fails_and_the_grader_survives():
    me = os.getpid()
    code = (
        "import os, signal\n"
        f"for pid in (os.getppid(), {me}, 1):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as e:\n"
        "        print('refused', pid, type(e).__name__)\n"
        "try:\n"
        "    os.kill(-1, signal.SIGKILL)\n"
        "except OSError:\n"
        "    pass\n"
        "print('still here')\n"
    )
    r = run_python(code)
    assert r.status in ("ok", "runtime_error")
    assert os.getpid() == me and run_python("print(1)").stdout == "1\n"  # we are alive and can still grade


@needs_uid
def test_daemon_left_behind_is_killed():
    token = f"{random.randint(10**6, 10**7)}.{random.randint(100, 999)}"  # a unique argument to `sleep`
    code = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv('/usr/bin/sleep', ['sleep', '{token}'])\n"
        "    os._exit(0)\n"
        "print('parent exits')\n"
    )
    r = run_python(code)
    assert r.status == "ok"
    assert _procs_with(token) == []


def test_printing_gigabytes_is_cut_off():
    code = "import sys\nchunk = 'x' * (1 << 20)\nwhile True:\n    sys.stdout.write(chunk)\n"
    start = time.monotonic()
    r = run_python(code, limits=Limits(timeout_s=10, output_bytes=1 << 20))
    assert r.status == "output_limit" and len(r.stdout) <= 1 << 20
    assert time.monotonic() - start < 5


def test_rejects_unknown_level():
    with pytest.raises(ValueError, match="sandbox level"):
        run_python("print(1)", level="docker")


@pytest.mark.parametrize("level", ["bwrap", "uid", "rlimit"])
def test_fallback_levels_still_bound_time_and_output_and_say_what_they_are(level):
    if level == "uid" and "uid" not in LEVEL:
        pytest.skip("the uid level needs root and setpriv")
    if level == "bwrap" and not LEVEL.startswith("bwrap"):
        pytest.skip("bubblewrap unusable here")
    r = run_python("print(input())", "hi\n", level=level)
    assert (r.status, r.stdout, r.isolation) == ("ok", "hi\n", level)
    assert run_python("while True:\n    pass\n", limits=Limits(timeout_s=1), level=level).status == "timeout"
    spam = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    assert run_python(spam, limits=Limits(output_bytes=1 << 20), level=level).status == "output_limit"


@pytest.fixture
def without_bwrap(tmp_path, monkeypatch):
    """A PATH holding every sandbox tool except bubblewrap (links in a folder of their own), and a fresh level probe."""
    import shutil

    from r1distill.grading import sandbox

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv", "prlimit", "kill"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    sandbox.isolation_level.cache_clear()
    yield sandbox
    sandbox.isolation_level.cache_clear()


def test_without_bubblewrap_untrusted_code_is_refused_unless_a_weaker_level_is_named(without_bwrap):
    from r1distill.grading.code import grade_code_many

    weaker = without_bwrap.isolation_level()
    assert weaker in ("uid", "rlimit")
    with pytest.raises(without_bwrap.SandboxRefused) as refused:
        run_python("print(1)")
    message = str(refused.value)
    assert "\n" not in message and "apt-get install bubblewrap" in message
    assert f"verify.code.isolation: {weaker}" in message
    answer = "```python\nprint(input())\n```"
    ref = {"tests": [{"input": "1\n", "output": "1\n", "testtype": "stdin"}]}
    with pytest.raises(without_bwrap.SandboxRefused):  # a whole batch stops, not one grader_error per sample
        grade_code_many([(answer, ref)] * 2)
    r = run_python("print(input())", "ok\n", level=weaker)  # named: runs, and says at which level
    assert (r.status, r.stdout, r.isolation) == ("ok", "ok\n", weaker)
    assert [g.details["isolation"] for g in grade_code_many([(answer, ref)], level=weaker)] == [weaker]
    os.environ["R1DISTILL_SANDBOX"] = weaker  # the same acceptance for stages without a recipe key (rl)
    try:
        assert run_python("print(2)").isolation == weaker
    finally:
        del os.environ["R1DISTILL_SANDBOX"]


def test_verify_refuses_in_one_line_and_exits_2_without_bubblewrap(without_bwrap, tmp_path, capsys):
    """The stage's user path: one line, exit 2, no manifest; `verify.code.isolation: uid|rlimit` accepts the level."""
    from r1distill.core.records import Sample
    from r1distill.core.store import ShardWriter, read_manifest, write_manifest
    from r1distill.verify.stage import main

    ref = {"tests": [{"input": "2 3\n", "output": "5\n", "testtype": "stdin"}]}
    answer = "<think>\nadd\n</think>\n\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    sample = Sample("c/0/0", "c", "0", 0, "code", "add", [{"role": "user", "content": "add"}], ref, answer, {})
    gen = tmp_path / "generate"
    with ShardWriter(gen) as writer:
        writer.write(sample.to_json())
    write_manifest(gen, {"stage": "generate", "counts": {"samples": 1}})
    out = tmp_path / "verify"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("verify:\n  workers: 1\n")
    argv = ["-c", str(recipe), "-i", str(gen), "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bubblewrap" in err and "verify.code.isolation" in err
    assert read_manifest(out) is None
    weaker = without_bwrap.isolation_level()
    assert main([*argv, f"verify.code.isolation={weaker}"]) == 0
    assert read_manifest(out)["stats"]["isolation"] == {weaker: 1}
