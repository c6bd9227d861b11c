"""Setting up the Lean project without Lean: pin profiles, the REPL flush patch, the open-stdin smoke
test and the environment `lake env` prints (acted by tests/golden_replay.py, see its docstring)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prover.verifier.config import VerifierConfig
from prover.verifier.lean_project import ENV_CACHE, lean_env, repl_launch

ROOT = Path(__file__).resolve().parents[1]
REPLAY = str(Path(__file__).with_name("golden_replay.py"))
PROFILES = ROOT / "lean" / "profiles"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- pin profiles -----------------------------------------------------------------------------------

# (profile, toolchain, {package: (url, rev)}): the revisions read from the pinned repositories
# (DeepSeek-Prover-V1.5's mathlib4 submodule and its manifest; the REPL's tags; the manifest of the
# REPL's own Mathlib tests at tag v4.15.0). docs/verifier.md says how each was checked.
PINS = [
    (
        "deepseek-v1.5",
        "leanprover/lean4:v4.9.0-rc1",
        {
            "mathlib": ("https://github.com/xinhjBrant/mathlib4.git", "2f65ba7f1a9144b20c8e7358513548e317d26de1"),
            "REPL": ("https://github.com/xinhjBrant/repl.git", "3334a97b268ecc67beb36a75787f7e831208a724"),
            "batteries": (
                "https://github.com/leanprover-community/batteries",
                "42b5dddbd6b2658fcfede9dad26cc47737edec2d",
            ),
            "Cli": ("https://github.com/leanprover/lean4-cli", "2cf1030dc2ae6b3632c84a09350b675ef3e347d0"),
        },
    ),
    (
        "v4.15.0",
        "leanprover/lean4:v4.15.0",
        {
            "mathlib": ("https://github.com/leanprover-community/mathlib4", "e9ae2a61ef5c99d6edac84f0d04f6324c5d97f67"),
            "REPL": ("https://github.com/leanprover-community/repl", "21966799da3691a0912b5a15193585bd2dd7165d"),
            "batteries": (
                "https://github.com/leanprover-community/batteries",
                "e8dc5fc16c625fc4fe08f42d625523275ddbbb4b",
            ),
        },
    ),
]


@pytest.mark.parametrize("profile, toolchain, pins", PINS, ids=[p[0] for p in PINS])
def test_profile_pins_every_dependency_consistently(profile, toolchain, pins):
    folder = PROFILES / profile
    assert (folder / "lean-toolchain").read_text().strip() == toolchain
    manifest = json.loads((folder / "lake-manifest.json").read_text())
    packages = {p["name"]: p for p in manifest["packages"]}
    for name, (url, rev) in pins.items():
        assert (packages[name]["url"], packages[name]["rev"]) == (url, rev), name
    assert all(re.fullmatch(r"[0-9a-f]{40}", p["rev"]) for p in packages.values())  # nothing floats
    # lakefile.lean asks for exactly what the manifest pins, so Lake has nothing to update
    requires = re.findall(r'require (\w+) from git\s+"([^"]+)" @ "([^"]+)"', (folder / "lakefile.lean").read_text())
    assert {name for name, _, _ in requires} == {"mathlib", "REPL"}
    for name, url, input_rev in requires:
        assert not packages[name]["inherited"]
        assert (packages[name]["url"], packages[name]["inputRev"]) == (url, input_rev)


def test_repository_root_is_the_default_profile():
    for name in ("lean-toolchain", "lakefile.lean", "lake-manifest.json"):
        assert (ROOT / name).read_text() == (PROFILES / "deepseek-v1.5" / name).read_text(), name


@pytest.fixture
def no_network_path(tmp_path):
    """A PATH whose git, curl, lake, elan and python3 only log their call: a dry run must call none of them
    except python3 (which reads the manifest)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("git", "curl", "lake", "elan", "wget"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho {tool} "$@" >> {log}\nexit 1\n')
        (bin_dir / tool).chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", log


def dry_run(profile: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts/setup_lean.sh"), "--profile", profile, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": path, "HOME": "/nonexistent"},
    )


@pytest.mark.parametrize("profile, toolchain, pins", PINS, ids=[p[0] for p in PINS])
def test_dry_run_prints_the_pins_and_commands_without_network(profile, toolchain, pins, no_network_path):
    path, log = no_network_path
    before = {f: (ROOT / f).read_bytes() for f in ("lean-toolchain", "lakefile.lean", "lake-manifest.json")}
    out = dry_run(profile, path)
    assert out.returncode == 0, out.stderr
    assert toolchain in out.stdout
    for url, rev in pins.values():
        assert re.search(rf"{re.escape(url)}\s+\S+\s+{rev}", out.stdout), (url, rev)
    for command in ("patch_repl_flush.py .lake/packages/REPL/REPL/Main.lean", "lake build repl", "repl_smoke.py"):
        assert command in out.stdout
    assert not log.exists(), log.read_text()  # no git, curl, lake or elan was run
    assert {f: (ROOT / f).read_bytes() for f in before} == before  # nothing changed


def test_dry_run_of_any_release_and_bad_profiles(no_network_path):
    path, log = no_network_path
    out = dry_run("v4.16.0", path)
    assert out.returncode == 0 and "leanprover/lean4:v4.16.0" in out.stdout and "lake update" in out.stdout
    assert not log.exists()
    bad = dry_run("v4.16", path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown profile 'v4.16'" in bad.stderr


# --- defect 1: REPLs before v4.10.0 never flush -------------------------------------------------------

# The end of the REPL's loop as tag v4.9.0 and DeepSeek's fork have it (REPL/Main.lean, `where loop`),
# and as v4.10.0 on has it (PR #49 prints through a helper that flushes).
LOOP_V4_9 = (
    "where loop : M IO Unit := do\n  let query ← getLines\n  IO.println <| toString <| ← match ← parse query with\n"
    '  | .command r => return toJson (← runCommand r)\n  IO.println "" -- blank line after each answer\n  loop\n'
)
LOOP_V4_10 = LOOP_V4_9.replace('IO.println "" --', 'printFlush "\\n" --').replace(
    "where loop",
    "def printFlush (s : String) : IO Unit := do\n  let out ← IO.getStdout\n  out.putStr s\n  out.flush\n\nwhere loop",
)


def test_flush_patch_adds_one_flush_after_each_answer():
    patch = load_script("patch_repl_flush")
    patched = patch.add_flush(LOOP_V4_9)
    lines = patched.splitlines()
    blank = next(i for i, line in enumerate(lines) if 'IO.println ""' in line)
    assert lines[blank + 1] == "  (← IO.getStdout).flush " + patch.MARKER  # same indentation, right after
    assert lines[blank + 2] == "  loop"
    assert patch.add_flush(patched) == patched  # idempotent
    assert patch.add_flush(LOOP_V4_10) == LOOP_V4_10  # a REPL that flushes is left alone
    with pytest.raises(patch.PatchError, match="found 0"):
        patch.add_flush("def main : IO Unit := pure ()\n")


def test_flush_patch_command_line(tmp_path):
    main_lean = tmp_path / "Main.lean"
    main_lean.write_text(LOOP_V4_9)

    def run():
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts/patch_repl_flush.py"), str(main_lean)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert run().returncode == 0 and "flush" in main_lean.read_text()
    assert "already flushes" in run().stdout
    missing = subprocess.run(
        [sys.executable, str(ROOT / "scripts/patch_repl_flush.py"), str(tmp_path / "none.lean")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 1 and "none.lean" in missing.stderr


# --- defect 2: `lake env` prints relative paths before lean4 PR #7822 -----------------------------------


def fake_project(tmp_path: Path, paths: str) -> tuple[Path, str]:
    """A Lake project with Mathlib's library in place and, first on PATH, a `lake` that acts `lake env`
    with relative (Lean v4.9.0) or absolute paths."""
    project = tmp_path / "project"
    (project / ".lake/packages/mathlib/.lake/build/lib/Mathlib").mkdir(parents=True)
    (project / ".lake/packages/mathlib/.lake/build/lib/Mathlib.olean").write_bytes(b"")
    (project / "lakefile.lean").write_text("-- test project\n")
    (project / "lean-toolchain").write_text("leanprover/lean4:v4.9.0-rc1\n")
    (project / "lake-manifest.json").write_text('{"version": "1.0.0", "packages": []}\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lake").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPLAY}" lake --paths {paths} "$@"\n')
    (bin_dir / "lake").chmod(0o755)
    return project, f"{bin_dir}:{os.environ['PATH']}"


def test_lake_env_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    project, path = fake_project(tmp_path, "relative")
    monkeypatch.setenv("PATH", path)
    env = lean_env(project)
    entries = env["LEAN_PATH"].split(":")
    assert all(os.path.isabs(e) for e in entries), entries
    assert str(project / ".lake/packages/mathlib/.lake/build/lib") in entries
    assert os.path.isabs(env["LD_LIBRARY_PATH"])


def test_env_cache_with_relative_paths_is_not_reused(tmp_path, monkeypatch):
    """A cache written before the fix (same manifest and toolchain, relative paths) is recomputed."""
    import hashlib

    project, path = fake_project(tmp_path, "relative")
    monkeypatch.setenv("PATH", path)
    old = hashlib.sha256()  # the key as it was: manifest and toolchain only
    for name in ("lake-manifest.json", "lean-toolchain"):
        old.update((project / name).read_bytes())
    (project / ENV_CACHE).parent.mkdir(parents=True, exist_ok=True)
    (project / ENV_CACHE).write_text(
        json.dumps({"fingerprint": old.hexdigest(), "env": {"LEAN_PATH": "./.lake/build/lib"}})
    )
    env = lean_env(project)
    assert all(os.path.isabs(e) for e in env["LEAN_PATH"].split(":"))
    cached = json.loads((project / ENV_CACHE).read_text())
    assert cached["env"] == env and cached["fingerprint"] != old.hexdigest()
    # a cache that passes the key but holds a relative path (written by hand, say) is not trusted either
    (project / ENV_CACHE).write_text(json.dumps({**cached, "env": {"LEAN_PATH": "./.lake/build/lib"}}))
    assert os.path.isabs(lean_env(project)["LEAN_PATH"].split(":")[0])


def test_pool_loads_mathlib_through_the_relative_lake_env_of_lean_4_9(tmp_path, monkeypatch, golden_dir):
    """The whole path: `lake env` (relative, as at v4.9.0) -> the cached environment -> a worker in its
    own scratch directory whose REPL looks Mathlib up in LEAN_PATH as Lean does."""
    from prover.verifier import LeanPool, ProofRequest, Status

    project, path = fake_project(tmp_path, "relative")
    monkeypatch.setenv("PATH", path)
    repl = project / ".lake/packages/REPL/.lake/build/bin/repl"
    repl.parent.mkdir(parents=True)
    recorded = golden_dir / "v4.9.0" / "Mathlib" / "test"
    repl.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{REPLAY}" repl --golden "{recorded}" --check-lean-path '
        "--axioms mathd_numbertheory_188=propext,Classical.choice,Quot.sound\n"
    )
    repl.chmod(0o755)
    argv, env = repl_launch(VerifierConfig(lean_project=str(project)))
    assert argv == [str(repl)] and env["LEAN_PATH"].startswith("/")
    header, statement = h20231020(recorded)
    config = VerifierConfig(lean_project=str(project), sandbox="none", workers=1, start_timeout=60, timeout=60)
    with LeanPool(config) as pool:
        verdict = pool.check_batch([ProofRequest(statement, " norm_num", header, "mathd_numbertheory_188")])[0]
    assert verdict.status is Status.PROVED, verdict


def h20231020(recorded: Path) -> tuple[str, str]:
    """The header and the first statement of the REPL's recorded Mathlib conversation H20231020."""
    requests = [json.loads(b) for b in (recorded / "H20231020.in").read_text().split("\n\n") if b.strip()]
    return requests[0]["cmd"], requests[1]["cmd"].removesuffix(" norm_num")


@pytest.fixture
def golden_dir():
    path = ROOT.parent / "shared" / "golden" / "repl"
    if not path.is_dir():
        pytest.skip(f"needs the REPL's recorded conversations at {path} (../shared/golden/repl)")
    return path


# --- the header of each profile -----------------------------------------------------------------------


def test_profile_headers_match_their_provers_and_bounded_is_an_option(tmp_path):
    from prover.data import DEEPSEEK_HEADER, load_problems
    from prover.verifier.config import BOUNDED_HEARTBEATS, DEFAULT_HEADER, HEADERS, PROFILE_HEADERS

    # DeepSeek-Prover-V1.5 (prover/utils.py LEAN4_DEFAULT_HEADER) and Kimina-Prover-Preview's solutions
    assert set(PROFILE_HEADERS) == {p.name for p in PROFILES.iterdir()}
    for header in PROFILE_HEADERS.values():
        assert "set_option maxHeartbeats 0\n" in header
    assert DEFAULT_HEADER == DEEPSEEK_HEADER == PROFILE_HEADERS["deepseek-v1.5"]
    assert f"set_option maxHeartbeats {BOUNDED_HEARTBEATS}\n" in HEADERS["bounded"]
    data = tmp_path / "p.jsonl"
    data.write_text(
        json.dumps({"name": "x", "formal_statement": "theorem x : True := by", "header": "import Foo\n"}) + "\n"
    )
    assert load_problems(str(data))[0].header == "import Foo\n"  # a file's header column wins
    assert load_problems(str(data), header="bounded")[0].header == HEADERS["bounded"]
    assert load_problems(str(data), header="import Bar\n")[0].header == "import Bar\n"
