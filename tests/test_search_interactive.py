"""The interactive session through a pseudo-terminal: paste a statement, watch the live progress,
get the proof and save it, stop a hopeless search with Ctrl-C, change settings, quit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

TESTS = Path(__file__).resolve().parent
# `--task property` is the exact-checker task of test_search.py, registered as a plugin task would be.
DRIVER = (
    f"import sys; sys.path.insert(0, {str(TESTS)!r}); from prover.tasks import base; "
    "base._REGISTRY['property'] = 'test_search:PropertyTask'; "
    "from prover.search.cli import main; sys.exit(main(sys.argv[1:]))"
)
PROMPT = "theorem> "


@pytest.fixture
def session(tiny_model_dir, tmp_path):
    args = [
        "-c",
        DRIVER,
        "--task",
        "property",
        "--model",
        str(tiny_model_dir),
        "--sampler.backend",
        "hf",
        "--sampler.device",
        "cpu",
        "--max_tokens",
        "16",
        "--round_size",
        "4",
        "--budget",
        "64",
        "--history_file",
        str(tmp_path / "history"),
        "--log-level",
        "WARNING",
    ]
    env = {**os.environ, "TERM": "xterm", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # codec_errors: Ctrl-C makes the terminal drop queued output, which can cut a character in two.
    child = pexpect.spawn(
        sys.executable, args, env=env, encoding="utf-8", codec_errors="replace", dimensions=(50, 160), timeout=60
    )
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_paste_prove_save_interrupt_and_quit(session, tmp_path):
    child = session
    child.expect_exact(PROMPT)
    child.sendline(":budget 32")
    child.expect_exact("budget = 32")

    # A pasted file: a header with blank lines (they do not end it: no theorem yet), then a
    # statement over two lines, ended by a blank line.
    child.expect_exact(PROMPT)
    for line in ["import Mathlib", "", "open Real", "", "theorem t (x : ℕ)", "    (h : 2 * x = 4) : x = 2 := by", ""]:
        child.sendline(line)
    child.expect("proved in [0-9.]+ s after [0-9]+ samples")
    child.expect_exact(PROMPT)
    saved = tmp_path / "proofs.lean"
    child.sendline(f":save {saved}")
    child.expect_exact("saved to")
    text = saved.read_text()
    assert text.startswith("import Mathlib\n\nopen Real\n\ntheorem t (x : ℕ)\n    (h : 2 * x = 4) : x = 2 := by\n")
    assert "a" in text.split(":= by\n", 1)[1]  # the proof the exact checker accepted

    # Nothing proves False: the search runs until Ctrl-C, showing its progress meanwhile.
    child.expect_exact(PROMPT)
    child.sendline(":time 0")
    child.expect_exact("time_limit = 0.0")
    child.sendline(":budget 100000")
    child.expect_exact(PROMPT)
    child.sendline("theorem f : False := by")
    child.sendline("")
    child.expect("[0-9]+ drawn, [0-9]+ malformed")
    child.expect("[0-9]+ rejected")  # verdicts are in
    child.expect("missing 'a'")  # the most common error
    child.sendintr()
    child.expect_exact("stopped by the user")
    child.expect_exact(PROMPT)

    # Bad input is answered at once (a blank line does not end what does not parse yet; a second
    # one does), and the session goes on.
    child.sendline("lemma nope : True")
    child.sendline("")
    child.expect_exact("...")
    child.sendline("")
    child.expect_exact("bad statement")
    child.expect_exact(PROMPT)
    child.sendline(":strategy dfs")
    child.expect_exact("unknown strategy")
    child.sendline(":quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert ":budget 32" in (tmp_path / "history").read_text()  # readline history was kept


def test_a_bad_model_path_keeps_the_working_model(session, tiny_model_dir, tmp_path):
    """``:model /nonexistent`` used to unload the working model and leave the session without one."""
    child = session
    child.expect_exact(PROMPT)
    child.sendline(":model /nonexistent/model")
    child.expect("no such model.*: model directory /nonexistent/model does not exist")  # red label, then the detail
    child.expect_exact(f"still using {tiny_model_dir}")
    # config.json but no weights: the load fails, and the previous model is loaded again
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((Path(tiny_model_dir) / "config.json").read_text())
    child.expect_exact(PROMPT)
    child.sendline(f":model {broken}")
    child.expect_exact("could not load the model")
    child.expect_exact(f"back to {tiny_model_dir}")
    child.expect_exact(PROMPT)
    child.sendline(":show")
    child.expect_exact(f"model {tiny_model_dir}")
    child.expect_exact(PROMPT)
    child.sendline("theorem t (x : ℕ) (h : 2 * x = 4) : x = 2 := by")
    child.sendline("")
    child.expect("proved in [0-9.]+ s after [0-9]+ samples")
    child.expect_exact(PROMPT)
    child.sendline(":quit")
    child.expect(pexpect.EOF)
