"""The files users look for beside the code agree with each other: the license pyproject declares is
the one in LICENSE, and CITATION.cff cites the paper the method comes from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11 (tomllib)")

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_the_full_apache_2_text_pyproject_declares():
    text = (ROOT / "LICENSE").read_bytes()
    # the md5 of https://www.apache.org/licenses/LICENSE-2.0.txt, byte for byte
    assert hashlib.md5(text).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}


def test_citation_names_the_project_and_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["version"] == project["version"]
    paper = cff["preferred-citation"]
    assert paper["title"] == "Rewarding the Unlikely: Lifting GRPO Beyond Distribution Sharpening"
    assert [a["family-names"] for a in paper["authors"]] == ["He", "Fried", "Welleck"]
    assert {"type": "other", "value": "arXiv:2506.02355", "description": "the arXiv preprint"} in paper["identifiers"]
