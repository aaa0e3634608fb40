"""``@app.job`` keeps the handler's signature for type checkers (issue 8): mypy --strict, and
pyright when installed, reject each wrong call in ``fixtures/wrong_perform.py`` and accept
``fixtures/good_usage.py``.

The checkers see errands as a user's checker does: installed in a virtualenv (a copy of the
package, as a wheel installs it, found through PEP 561), not through our ``src`` folder, so
the shipped ``py.typed`` marker is part of what is tested.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import errands

FIXTURES = Path(__file__).parent / "fixtures"
WRONG, GOOD = FIXTURES / "wrong_perform.py", FIXTURES / "good_usage.py"
_MARK = re.compile(r"#\s*expect-error\[([a-z-]+)\]")
Errors = dict[tuple[str, int], list[str]]  # (file name, line) -> error codes (pyright: rule names)
_MYPY_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*?)(?:  \[(?P<code>[a-z-]+)\])?$")


def expected_errors(path: Path) -> dict[int, str]:
    """Line number -> mypy error code, from the ``# expect-error[code]`` marks."""
    marks = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _MARK.search(line)
        if match:
            marks[number] = match.group(1)
    return marks


def _venv(root: Path, *, marker: bool) -> Path:
    """A bare virtualenv with a copy of the errands package in its site-packages; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    package = Path(errands.__file__).parent
    ignore = shutil.ignore_patterns("__pycache__", *([] if marker else ["py.typed"]))
    shutil.copytree(package, Path(purelib) / "errands", ignore=ignore)
    return python


def _clean_env() -> dict[str, str]:
    # a MYPYPATH or PYTHONPATH pointing at src/ would let the checkers skip the PEP 561 lookup
    return {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}


def _mypy(python: Path, workdir: Path, *files: Path) -> Errors:
    """Run mypy --strict; errors by (file name, line) -> [code or message]. The empty config file
    keeps our own pyproject settings (and any user config) out of it."""
    config = workdir / "mypy.ini"
    config.write_text("[mypy]\n")
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file", str(config), "--python-executable",
               str(python), "--cache-dir", str(workdir / ".mypy_cache"), "--no-error-summary",
               *map(str, files)]
    run = subprocess.run(command, check=False, cwd=workdir, capture_output=True, text=True, env=_clean_env(),
                         timeout=300)
    errors: Errors = {}
    for line in run.stdout.splitlines():
        match = _MYPY_LINE.match(line)
        if match:
            key = (Path(match["path"]).name, int(match["line"]))
            errors.setdefault(key, []).append(match["code"] or match["message"])
    if run.returncode not in (0, 1) or (run.returncode == 1 and not errors):  # e.g. mypy not installed
        pytest.fail(f"mypy did not run ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return errors


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield _venv(tmp_path_factory.mktemp("typed") / "venv", marker=True)


@pytest.fixture(scope="module")
def mypy_errors(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Errors:
    return _mypy(installed, tmp_path_factory.mktemp("mypy"), WRONG, GOOD)


def test_the_marks_cover_every_perform_form() -> None:
    marks = expected_errors(WRONG)
    text = WRONG.read_text()
    assert len(marks) >= 15
    for form in ("perform(", "perform_in(", "perform_at(", "aperform(", "with_options(", "assert_enqueued("):
        assert any(form in line for line in text.splitlines() if _MARK.search(line)), form


def test_mypy_rejects_each_wrong_call(mypy_errors: Errors) -> None:
    found = {line: codes for (name, line), codes in mypy_errors.items() if name == WRONG.name}
    expected = expected_errors(WRONG)
    missing = {line: code for line, code in expected.items() if code not in found.get(line, [])}
    unexpected = {line: codes for line, codes in found.items() if line not in expected}
    assert not missing, f"mypy accepted wrong calls (line: expected code): {missing}; it said {found}"
    assert not unexpected, f"mypy errors on lines not marked # expect-error: {unexpected}"


def test_mypy_accepts_the_good_usage(mypy_errors: Errors) -> None:
    found = {line: codes for (name, line), codes in mypy_errors.items() if name == GOOD.name}
    assert found == {}


def test_without_py_typed_mypy_sees_no_types(tmp_path: Path) -> None:
    """The marker is what makes the checks above possible: without it mypy refuses to read the
    package (and would treat every job as Any)."""
    python = _venv(tmp_path / "venv", marker=False)
    errors = _mypy(python, tmp_path, WRONG)
    assert any("import-untyped" in codes or "import-not-found" in codes for codes in errors.values()), errors
    assert (Path(errands.__file__).parent / "py.typed").is_file()


def _pyright_env() -> dict[str, str]:
    return {**_clean_env(), "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}  # no "newer version" look-up


# pyright (optional: `pip install pyright`, which needs Node.js) ----------------------------------
def _pyright_available() -> bool:
    if shutil.which("node") is None:
        return False
    try:
        probe = subprocess.run([sys.executable, "-m", "pyright", "--version"], check=False,
                               capture_output=True, text=True, timeout=120, env=_pyright_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and "pyright" in probe.stdout


@pytest.fixture(scope="module")
def pyright_errors(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Errors:
    if not _pyright_available():
        pytest.skip("pyright is not installed (pip install pyright; it needs Node.js)")
    workdir = tmp_path_factory.mktemp("pyright")
    (workdir / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "strict"}))
    command = [sys.executable, "-m", "pyright", "--outputjson", "--project", str(workdir), "--pythonpath",
               str(installed), str(WRONG), str(GOOD)]
    run = subprocess.run(command, check=False, cwd=workdir, capture_output=True, text=True, timeout=300,
                         env=_pyright_env())
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no report ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    errors: Errors = {}
    for item in report["generalDiagnostics"]:
        if item["severity"] == "error":
            key = (Path(item["file"]).name, item["range"]["start"]["line"] + 1)
            errors.setdefault(key, []).append(item.get("rule", item["message"]))
    return errors


def test_pyright_rejects_each_wrong_call(pyright_errors: Errors) -> None:
    found = {line for name, line in pyright_errors if name == WRONG.name}
    assert found == set(expected_errors(WRONG)), pyright_errors


def test_pyright_accepts_the_good_usage(pyright_errors: Errors) -> None:
    assert {key: rules for key, rules in pyright_errors.items() if key[0] == GOOD.name} == {}
