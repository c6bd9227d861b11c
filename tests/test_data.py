"""Problem loading: the shared files, the DeepSeek layout, directories, the hub path, validation, exclusion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prover.data import loading
from prover.data.loading import DEEPSEEK_HEADER, NAMED_EXCLUDES, DataError, load_problems, resolve_exclude

SHARED_SETS = {
    # name: (file, rows, first problem, split of the first row)
    "minif2f-test": ("minif2f_test.parquet", 244, "mathd_algebra_478", "test"),
    "minif2f-valid": ("minif2f_valid.parquet", 244, "amc12a_2019_p21", "valid"),
    "lean-workbook": ("lean_workbook_goedel_28k.parquet", 28271, "lean_workbook_43783", "lean_workbook"),
    "lean-workbook-holdout": (
        "lean_workbook_goedel_holdout_800.parquet",
        800,
        "lean_workbook_plus_66978",
        "lean_workbook",
    ),
    "mff-lwb-unseen-200": ("mff_lwb_unseen_200.parquet", 200, "amc12a_2008_p4", "valid"),  # the paper's validation set
}


@pytest.fixture
def data_dir_env(shared_data_dir, monkeypatch):
    monkeypatch.setenv("PROVER_DATA_DIR", str(shared_data_dir))
    return shared_data_dir


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def shared_row(name: str, statement: str = "theorem t : 1 = 1 := by\n", **extra) -> dict:
    return {"theorem_full_name": name, "theorem_statement": statement, "informal_statement": "", "split": "x", **extra}


@pytest.mark.parametrize("set_name", sorted(SHARED_SETS))
def test_named_sets_load_every_row(set_name, data_dir_env):
    file, rows, first, split = SHARED_SETS[set_name]
    assert loading.resolve_source(set_name).name in (file, loading.RELEASE_FILES[set_name])
    problems = load_problems(set_name)
    assert len(problems) == rows
    p = problems[0]
    assert (p.name, p.split) == (first, split)
    assert p.header == DEEPSEEK_HEADER  # the shared files have no header column
    assert p.extra == {"source": str(loading.resolve_source(set_name)), "row": 0}  # ours or the release's name
    assert all(q.statement.rstrip().endswith(":= by") for q in problems)


def test_minif2f_keeps_informal_statement_and_statement_text(shared_data_dir):
    (p,) = load_problems(str(shared_data_dir / "minif2f_test.parquet"), limit=1)
    assert p.informal.startswith("/-- The volume of a cone") and p.informal.endswith("-/\n")
    assert p.statement.startswith("theorem mathd_algebra_478 (b h v : ℝ)") and p.statement.endswith(":= by\n")


def test_deepseek_jsonl_layout_uses_its_header_and_split_filter(tmp_path):
    header = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 0\n\nopen BigOperators Real Nat Topology Rat\n\n"
    rows = [
        {
            "name": "a",
            "split": "valid",
            "informal_prefix": "/-- A. -/\n",
            "formal_statement": "theorem a : 1 = 1 := by\n",
            "goal": "⊢ 1 = 1",
            "header": header,
        },
        {
            "name": "b",
            "split": "test",
            "informal_prefix": "",
            "formal_statement": "theorem b : 2 = 2 := by\n",
            "goal": "⊢ 2 = 2",
            "header": header,
        },
    ]
    path = write_jsonl(tmp_path / "minif2f.jsonl", rows)
    assert [p.name for p in load_problems(str(path))] == ["a", "b"]
    (b,) = load_problems(str(path), split="test")
    assert (b.name, b.header, b.split, b.informal) == ("b", header, "test", "")
    (a,) = load_problems(str(path), split="valid", header="import Mathlib\n\n")
    assert (a.informal, a.header) == ("/-- A. -/\n", "import Mathlib\n\n")
    with pytest.raises(DataError, match="no rows with split 'train'"):
        load_problems(str(path), split="train")


def test_explicit_column_mapping(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"id": "x", "lean": "theorem x : True := by"}])
    (p,) = load_problems(str(path), columns={"name": "id", "statement": "lean"})
    assert (p.name, p.statement, p.header) == ("x", "theorem x : True := by", DEEPSEEK_HEADER)
    with pytest.raises(DataError, match=r"mine.jsonl: missing column\(s\) \['nope'\]"):
        load_problems(str(path), columns={"name": "id", "statement": "lean", "informal": "nope"})


def test_directory_loads_every_file_in_name_order(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [shared_row("two")])
    write_jsonl(tmp_path / "a.jsonl", [shared_row("one")])
    (tmp_path / "notes.txt").write_text("ignored")
    assert [p.name for p in load_problems(str(tmp_path))] == ["one", "two"]


def test_hub_id_goes_through_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, split):
        calls.append((path, split))
        return datasets.Dataset.from_list([shared_row("hub_theorem")])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (p,) = load_problems("someone/lean-set", split="validation")
    assert calls == [("someone/lean-set", "validation")]
    assert (p.name, p.extra["source"]) == ("hub_theorem", "hub:someone/lean-set")


def test_unknown_set_name_fails_at_once_naming_the_sets(monkeypatch):
    """``minif2f-tset`` spent ~25 s on hub retries (datasets, offline) and never listed the named sets."""
    import datasets

    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: pytest.fail("a name that is no hub id went to the hub")
    )
    with pytest.raises(DataError) as err:
        load_problems("minif2f-tset")
    assert str(err.value) == (
        "unknown dataset 'minif2f-tset': did you mean minif2f-test? named sets: minif2f-test, minif2f-valid, "
        "lean-workbook, lean-workbook-holdout, mff-lwb-unseen-200; or a parquet/jsonl/json file, a directory of them, "
        "or a hub id (owner/name)"
    )
    with pytest.raises(DataError, match=r"^unknown dataset 'zzz': named sets: "):  # nothing close: no guess
        load_problems("zzz")


def test_the_release_file_names_work_as_the_named_sets(tmp_path, shared_data_dir):
    """A data directory downloaded from the paper's release names the files its own way."""
    shutil.copy(loading.resolve_source("mff-lwb-unseen-200", shared_data_dir), tmp_path / "mff-lwb-unseen-200.parquet")
    shutil.copy(loading.resolve_source("minif2f-valid", shared_data_dir), tmp_path / "minif2f_train.parquet")
    assert len(load_problems("mff-lwb-unseen-200", data_dir=tmp_path)) == 200
    assert {p.split for p in load_problems("minif2f-valid", data_dir=tmp_path)} == {"valid"}
    with pytest.raises(
        DataError,
        match=r"lean_workbook_goedel_28k.parquet does not exist, nor the release's "
        r"mff-lwb-goedel-28k.parquet .*github.com/AndreHe02/rewarding-unlikely-release",
    ):
        load_problems("lean-workbook", data_dir=tmp_path)


# --- validation: every error names the file and the row --------------------------------------


@pytest.mark.parametrize(
    "rows, message",
    [
        # a required column is missing: no layout fits
        ([{"theorem_full_name": "a", "statement": "theorem a : True := by"}], r"bad.jsonl: missing columns"),
        # empty statement
        ([shared_row("a"), shared_row("b", "  \n")], r"bad.jsonl, row 1 \('b'\): empty statement"),
        # a statement that does not end in `:= by`
        (
            [shared_row("a", "theorem a : True := by trivial\n")],
            r"bad.jsonl, row 0 \('a'\): statement must end with ':= by'",
        ),
        # a name used twice
        (
            [shared_row("a"), shared_row("b"), shared_row("a")],
            r"bad.jsonl, row 2: duplicate name 'a' \(first at .*bad.jsonl, row 0\)",
        ),
        # an empty name
        ([shared_row("")], r"bad.jsonl, row 0: empty name"),
    ],
)
def test_validation_errors_name_file_and_row(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message):
        load_problems(str(path))


def test_trailing_whitespace_after_by_is_accepted(tmp_path):
    path = write_jsonl(
        tmp_path / "ok.jsonl",
        [shared_row("a", "theorem a : True := by  \n\n"), shared_row("b", "theorem b : True := by")],
    )
    assert len(load_problems(str(path))) == 2


def test_duplicates_across_files_of_a_directory(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [shared_row("same")])
    write_jsonl(tmp_path / "b.jsonl", [shared_row("other"), shared_row("same")])
    with pytest.raises(DataError, match=r"b.jsonl, row 1: duplicate name 'same' \(first at .*a.jsonl, row 0\)"):
        load_problems(str(tmp_path))


def test_many_errors_are_summarised(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [shared_row(f"t{i}", "") for i in range(25)])
    with pytest.raises(DataError, match=r"25 invalid row\(s\)[\s\S]*and 15 more"):
        load_problems(str(path))


def test_unreadable_and_missing_sources(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="broken.parquet: cannot read as parquet"):
        load_problems(str(broken))
    with pytest.raises(DataError, match="no_such.parquet: no such file"):
        load_problems(str(tmp_path / "no_such.parquet"))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(DataError, match="empty_dir: directory holds no .parquet/.jsonl/.json files"):
        load_problems(str(empty))


# --- data directory and named sets -----------------------------------------------------------


def test_data_dir_from_env_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVER_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"named set 'minif2f-test': .*minif2f_test.parquet does not exist"):
        load_problems("minif2f-test")
    monkeypatch.setenv("PROVER_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="PROVER_DATA_DIR=.*is not a directory"):
        load_problems("minif2f-test")


def test_no_data_dir_says_where_to_get_the_files(monkeypatch, tmp_path):
    monkeypatch.delenv("PROVER_DATA_DIR", raising=False)
    monkeypatch.setattr(loading, "__file__", str(tmp_path / "a" / "b" / "c" / "loading.py"))
    with pytest.raises(
        DataError, match="set PROVER_DATA_DIR .*Rewarding the Unlikely.*github.com/AndreHe02/rewarding-unlikely-release"
    ):
        load_problems("minif2f-test")


def test_default_data_dir_is_shared_data_beside_the_repo(monkeypatch, shared_data_dir):
    monkeypatch.delenv("PROVER_DATA_DIR", raising=False)
    assert loading.default_data_dir().resolve() == shared_data_dir.resolve()


def test_data_dir_argument_wins(tmp_path, monkeypatch, shared_data_dir):
    monkeypatch.setenv("PROVER_DATA_DIR", str(tmp_path / "elsewhere"))  # would fail if consulted
    shutil.copy(loading.resolve_source("minif2f-valid", shared_data_dir), tmp_path / "minif2f_valid.parquet")
    problems = load_problems("minif2f-valid", data_dir=tmp_path, limit=2)
    assert [p.extra["source"] for p in problems] == [str(tmp_path / "minif2f_valid.parquet")] * 2


# --- exclusion and limit ---------------------------------------------------------------------


def test_defective_minif2f_list_excludes_exactly_those(data_dir_env):
    all_names = [p.name for p in load_problems("minif2f-test")]
    kept = [p.name for p in load_problems("minif2f-test", exclude=["minif2f-defective"])]
    defective = set(NAMED_EXCLUDES["minif2f-defective"])
    assert defective <= set(all_names)  # every listed name exists in the test split
    assert kept == [n for n in all_names if n not in defective]


def test_exclude_mixes_lists_and_names_then_limit(data_dir_env):
    names = [p.name for p in load_problems("minif2f-test")]
    kept = load_problems("minif2f-test", exclude=["minif2f-defective", names[0]], limit=3)
    expected = [n for n in names if n not in resolve_exclude(["minif2f-defective"]) and n != names[0]][:3]
    assert [p.name for p in kept] == expected
    assert resolve_exclude(["x", "minif2f-defective"]) == {"x", *NAMED_EXCLUDES["minif2f-defective"]}


def test_without_the_data_the_tests_that_need_it_skip_saying_where_to_get_it(tmp_path):
    """A clone without ../shared/data had 14 errors ("no data directory") instead of skips."""
    import os
    import subprocess
    import sys

    test = f"{__file__}::test_minif2f_keeps_informal_statement_and_statement_text"
    env = {**os.environ, "PROVER_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).parents[1],
    )
    assert out.returncode == 0 and "1 skipped" in out.stdout, out.stdout
    assert f"no problem sets at {tmp_path}: download the data/ folder of {loading.RELEASE_URL}" in out.stdout
