"""Bad inputs to ``torchslim report DIR``: exit 2 naming the file and what is wrong, and no report
file written or changed (the report is rendered whole before the first file is written)."""

from __future__ import annotations

import json

import pytest

from torchslim.core.errors import TorchSlimError
from torchslim.report import rerender

VALID_SHAPE = {"rows": [], "settings": ["b1_t1"], "primary": "b1_t1", "recommendations": {}, "rule_of_thumb": []}

# (id, bytes of matrix.json, needles)
CASES = [
    ("not-json", b"{rows: [", ["not valid JSON"]),
    ("not-utf8", b'{"rows": "\xff"}', ["not valid JSON", "utf-8"]),
    ("empty", b"", ["not valid JSON"]),
    ("a-list", b"[1, 2]", ["JSON list", "not a torchslim matrix", "rows, settings"]),
    ("a-string", b'"rows settings primary"', ["JSON str", "not a torchslim matrix"]),
    ("a-number", b"3", ["JSON int", "not a torchslim matrix"]),
    ("missing-keys", json.dumps({"rows": []}).encode(), ["missing settings, primary, recommendations"]),
    ("rows-not-list", json.dumps({**VALID_SHAPE, "rows": 3}).encode(), ["rows = 3", "not a list of rows"]),
    ("primary-not-text", json.dumps({**VALID_SHAPE, "primary": 64}).encode(), ["primary = 64", "b64_t1"]),
    ("recommendations-list", json.dumps({**VALID_SHAPE, "recommendations": []}).encode(),
     ["recommendations = []", "mapping of scenario"]),
    ("row-not-object", json.dumps({**VALID_SHAPE, "rows": [5]}).encode(), ["rows[0] = 5", "strategy, status"]),
    ("row-without-status", json.dumps({**VALID_SHAPE, "rows": [{"strategy": "a"}]}).encode(),
     ["rows[0]", "not a matrix row"]),
    ("row-fields-missing", json.dumps({**VALID_SHAPE, "rows": [{"strategy": "a", "status": "ok"}]}).encode(),
     ["does not render", "missing key", "run the comparison again"]),
]


def _dir_with(sandbox, content: bytes):
    folder = sandbox.out
    folder.mkdir()
    (folder / "matrix.json").write_bytes(content)
    return folder


@pytest.mark.parametrize(("case", "content", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_matrix_cli(sandbox, case, content, needles):
    folder = _dir_with(sandbox, content)
    sandbox.expect_exit_2(sandbox.cli("report", folder), "matrix.json", *needles)
    assert sorted(p.name for p in folder.iterdir()) == ["matrix.json"], "no report file may be written"
    assert (folder / "matrix.json").read_bytes() == content


@pytest.mark.parametrize(("case", "content", "needles"), CASES[:8], ids=[c[0] for c in CASES[:8]])
def test_bad_matrix_api(sandbox, case, content, needles):
    folder = _dir_with(sandbox, content)
    exc = sandbox.call(lambda: rerender(folder), TorchSlimError)
    sandbox.expect_message(exc, "matrix.json", *needles)


def test_no_matrix(sandbox):
    sandbox.out.mkdir()
    sandbox.expect_exit_2(sandbox.cli("report", sandbox.out), "matrix.json", "does not exist", "torchslim compare")


def test_matrix_is_a_directory(sandbox):
    (sandbox.out / "matrix.json").mkdir(parents=True)
    sandbox.expect_exit_2(sandbox.cli("report", sandbox.out), "matrix.json", "is a directory")


def test_report_dir_missing(sandbox):
    sandbox.expect_exit_2(sandbox.cli("report", sandbox.root / "nowhere"), "nowhere", "does not exist")
    assert not (sandbox.root / "nowhere").exists()
