"""Student notebooks: the exercise convention, `make student`, and the answer checks.

Three layers:
- the fixture notebook (tests/fixtures/student/): every case of the convention, and every
  departure from it that `make student` must refuse, on a notebook that runs in seconds;
- the chapters' sources: every exercise records its answer in its own solution, and solution
  cells are collapsed for JupyterLab (chapters being converted are listed, see below);
- the real book (marker `student`, after `make notebooks` and `make student`): every recorded
  answer passes its own check and a known wrong answer fails; the student copies run with the
  stubs unfilled ("not attempted"), and one with the reference answers filled in passes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import sympy as sp
from nbclient import NotebookClient

from udm import exercises

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import collapse_solutions  # noqa: E402
import student  # noqa: E402
from exercise_spans import scan, source  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "student" / "exercises_demo.ipynb"
FIXTURE_LABELS = {"ex-demo-moments", "ex-demo-derivative", "ex-demo-facts"}
CHAPTERS = student.toc_chapters(ROOT)
# Chapters not re-stripped with `make strip` since solutions are collapsed (stems): empty now;
# a chapter being converted goes here (the test fails once it is collapsed).
NOT_YET_COLLAPSED: set[str] = set()
BUILD = ROOT / "_build"
# The chapter whose student copy is run with every stub filled in (among those with checks).
FILLED_CHAPTER_PREFERENCE = ["a2_notation_crosswalk", "a1_thermodynamics", "14_summary"]


def _notebook(path: Path = FIXTURE) -> dict[str, Any]:
    return json.loads(path.read_text())


def _execute(notebook: dict[str, Any], folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run `notebook` in a fresh kernel in `folder`; the executed notebook."""
    node = nbformat.reads(json.dumps(notebook), as_version=4)
    NotebookClient(
        node, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute(env={**os.environ, **env})
    return node


def _log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _fill(notebook: dict[str, Any], value_code) -> dict[str, Any]:
    """Each stub's `name = ...` line replaced by `name = <value_code(label, name)>`."""
    filled = copy.deepcopy(notebook)
    for cell in filled["cells"]:
        label = cell["metadata"].get(student.STUB_TAG)
        if label:
            cell["source"] = re.sub(
                r"^(\w+) = \.\.\.  # .*$",
                lambda m, label=label: f"{m[1]} = {value_code(label, m[1])}",
                "".join(cell["source"]),
                flags=re.M,
            )
    return filled


def _reference_code(label: str, name: str) -> str:
    return f'exercises.reference("{label}")["values"]["{name}"]'


# --- The fixture: the convention and its departures -------------------------------------------


def test_fixture_follows_the_convention() -> None:
    chapter = scan(_notebook(), FIXTURE.name)
    assert chapter.problems == []
    assert set(chapter.exercises) == FIXTURE_LABELS
    assert [(span.label, span.start, span.end) for span in chapter.spans] == [
        ("ex-demo-moments", 3, 6),
        ("ex-demo-derivative", 8, 10),
        ("ex-demo-facts", 12, 14),
    ]
    assert chapter.answer_for("ex-demo-facts").names == ("count", "above", "last", "smallest")


def _broken(edit) -> list[str]:
    notebook = _notebook()
    edit(notebook["cells"])
    return scan(notebook, "broken").problems


def _set(cells: list[dict], index: int, text: str) -> None:
    cells[index]["source"] = text


def _code(text: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "id": "extra",
        "metadata": {},
        "outputs": [],
        "execution_count": None,
        "source": text,
    }


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda cells: _set(cells, 9, "derivative = sp.diff(sp.sqrt(alpha), alpha)"),
            "ex-demo-derivative: no exercises.answer('ex-demo-derivative', ...) call",
        ),
        (lambda cells: cells.pop(14), "solution of ex-demo-facts (cell 12) is never closed"),
        (lambda cells: cells.pop(6), "solution of ex-demo-moments (cell 3) is not closed before"),
        (
            lambda cells: _set(cells, 6, "```{solution-end}\n```\n\nMore words."),
            "cell 6: the {solution-end} fence must be alone in its cell",
        ),
        (
            lambda cells: _set(cells, 8, "Intro.\n\n```{solution-start} ex-demo-derivative\n```"),
            "cell 8: the {solution-start} fence must open its markdown cell",
        ),
        (
            lambda cells: cells.insert(15, _code("print(variance)")),
            "cell 15 reads 'variance', defined in the solution of ex-demo-moments",
        ),
        (
            lambda cells: cells.insert(15, _code("print(derivative + 1)")),
            "cell 15 reads 'derivative', defined in the solution of ex-demo-derivative",
        ),
        (
            lambda cells: _set(cells, 13, 'exercises.answer("ex-demo-facts", values=values + 1)'),
            "cell 15 reads 'values': the student stub of ex-demo-facts sets values = ...",
        ),
        (
            lambda cells: cells.insert(15, _code('exercises.answer("ex-demo-facts", count=2)')),
            "ex-demo-facts: 2 answer(...) calls (expected one)",
        ),
        (
            lambda cells: cells.insert(6, _code("print(mean)")),
            "ex-demo-moments: answer(...) must be in the solution's last code cell (6)",
        ),
        (
            lambda cells: _set(
                cells, 12, "```{solution-start} ex-demo-fact\n:class: dropdown\n```"
            ),
            "cell 12: solution of unknown exercise ex-demo-fact",
        ),
        (
            lambda cells: _set(cells, 13, "exercises.answer(label, count=1)"),
            "cell 13: answer(...) needs the exercise label as a string literal",
        ),
    ],
    ids=[
        "no-answer",
        "not-closed-at-end",
        "not-closed-before-next",
        "end-not-alone",
        "start-not-first",
        "solution-variable-used-after",
        "solution-variable-used-in-expression",
        "stub-shadows-chapter-variable",
        "two-answers",
        "answer-not-last",
        "unknown-label",
        "label-not-literal",
    ],
)
def test_departures_from_the_convention_are_reported(edit, expected: str) -> None:
    problems = _broken(edit)
    assert any(expected in problem for problem in problems), problems


def test_a_later_cell_may_rebind_a_solution_name() -> None:
    """Defining a name again outside the solution before reading it is fine."""
    assert _broken(lambda cells: cells.insert(15, _code("mean = 0.0\nprint(mean)"))) == []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`make student`'s script on the fixture: key collected by executing it, then the copy."""
    folder = tmp_path_factory.mktemp("student")
    paths = {"out": folder / "student", "key": folder / "answer_key"}
    assert (
        student.main(
            [
                "--chapters",
                str(FIXTURE),
                "--out",
                str(paths["out"]),
                "--key",
                str(paths["key"]),
                "--pending",
            ]
        )
        == 0
    )
    return paths


def test_student_copy_replaces_every_solution_by_a_stub(built: dict[str, Path]) -> None:
    copy_ = _notebook(built["out"] / FIXTURE.name)
    text = "\n".join(source(cell) for cell in copy_["cells"])
    assert "{solution-start}" not in text and "{solution-end}" not in text
    assert "np.outer" not in text and "exercises.answer" not in text and "sp.diff" not in text
    assert "divides by $N$, not" not in text, "the solution's prose is gone too"
    stubs = {
        c["metadata"][student.STUB_TAG]: source(c)
        for c in copy_["cells"]
        if student.STUB_TAG in c["metadata"]
    }
    assert set(stubs) == FIXTURE_LABELS
    assert stubs["ex-demo-moments"].splitlines() == [
        "mean = ...  # a number",
        "variance = ...  # a number",
        "table = ...  # a float array of shape (3, 3)",
        'exercises.check("ex-demo-moments", mean=mean, variance=variance, table=table);',
    ]
    assert "derivative = ...  # a SymPy expression in alpha" in stubs["ex-demo-derivative"]
    assert "smallest = ...  # a tuple of 2: a number; an integer" in stubs["ex-demo-facts"]
    assert all("jupyter" not in cell["metadata"] for cell in copy_["cells"])
    assert {p.name for p in (built["out"] / "answer_key").iterdir()} == {
        f"{label}.json" for label in FIXTURE_LABELS
    }


def test_stub_imports_exercises_when_the_chapter_does_not() -> None:
    notebook = _notebook()
    notebook["cells"][1]["source"] = (
        "import numpy as np\nimport sympy as sp\n\n"
        "alpha = sp.Symbol('alpha', positive=True)\nvalues = np.ones(3)"
    )
    chapter = scan(notebook)
    record = {"values": {"mean": exercises.encode("mean", 1.0)}}
    copy_ = student.student_notebook(notebook, chapter, {"ex-demo-moments": record})
    stub = next(
        c for c in copy_["cells"] if c["metadata"].get(student.STUB_TAG) == "ex-demo-moments"
    )
    assert stub["source"].startswith("from udm import exercises\n")


def test_student_copy_runs_with_stubs_unfilled(built: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "checks.jsonl"
    copy_ = _notebook(built["out"] / FIXTURE.name)
    executed = _execute(copy_, built["out"], {exercises.CHECK_LOG_ENV_VAR: str(log)})
    assert {entry["label"] for entry in _log(log)} == FIXTURE_LABELS
    for entry in _log(log):
        assert set(entry["statuses"].values()) == {"not attempted"}, entry
    outputs = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "mean: not attempted" in outputs


def test_student_copy_filled_with_the_reference_passes(
    built: dict[str, Path], tmp_path: Path
) -> None:
    log = tmp_path / "checks.jsonl"
    filled = _fill(_notebook(built["out"] / FIXTURE.name), _reference_code)
    _execute(filled, built["out"], {exercises.CHECK_LOG_ENV_VAR: str(log)})
    assert {entry["label"] for entry in _log(log)} == FIXTURE_LABELS
    for entry in _log(log):
        assert set(entry["statuses"].values()) == {"correct"}, entry


def test_student_copy_filled_with_wrong_answers_says_what_is_off(
    built: dict[str, Path], tmp_path: Path
) -> None:
    log = tmp_path / "checks.jsonl"
    wrong = {
        "mean": "-values.mean()",
        "variance": "values.std()",
        "table": "2 * np.outer(values, values)",
        "derivative": "-sp.diff(sp.sqrt(alpha) / (1 - alpha), alpha)",
        "count": "3",
        "above": "False",
        "last": '"Linear"',
        "smallest": "(0.5, 1)",
    }
    filled = _fill(_notebook(built["out"] / FIXTURE.name), lambda label, name: wrong[name])
    executed = _execute(filled, built["out"], {exercises.CHECK_LOG_ENV_VAR: str(log)})
    assert all(status == "wrong" for entry in _log(log) for status in entry["statuses"].values())
    printed = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    for expected in (
        "mean: wrong: the sign is flipped",
        "variance: wrong: this is the square root of the answer",
        "table: wrong: off by a constant factor: yours = answer x 2",
        "derivative: wrong: the sign is flipped",
        "count: wrong: off by one (1 too large)",
        "last: wrong: differs only in upper/lower case",
        "smallest: wrong: [1] off by one (1 too large)",
    ):
        assert expected in printed, printed


def test_key_is_reused_when_fresh_and_collected_when_stale(
    built: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--chapters",
        str(FIXTURE),
        "--out",
        str(built["out"]),
        "--key",
        str(built["key"]),
        "--pending",
    ]
    fresh = student.key_is_fresh(built["key"], [FIXTURE], ROOT / "lib" / "udm", FIXTURE_LABELS)
    assert fresh, "the key was just collected"
    assert not student.key_is_fresh(
        built["key"], [FIXTURE], ROOT / "lib" / "udm", FIXTURE_LABELS | {"ex-demo-new"}
    )
    stamp = built["key"] / student.COMPLETE
    os.utime(stamp, (0, 0))  # older than every source
    assert not student.key_is_fresh(built["key"], [FIXTURE], ROOT / "lib" / "udm", FIXTURE_LABELS)
    student.main(args)
    assert "collecting the answer key" in capsys.readouterr().out
    student.main(args)
    assert "reusing the answer key" in capsys.readouterr().out


def test_make_student_refuses_a_chapter_that_breaks_the_convention(tmp_path: Path) -> None:
    notebook = _notebook()
    notebook["cells"].insert(15, _code("print(variance)"))
    notebook["cells"][9]["source"] = "derivative = sp.diff(sp.sqrt(alpha), alpha)"
    broken = tmp_path / "broken.ipynb"
    broken.write_text(json.dumps(notebook))
    args = [
        "--chapters",
        str(broken),
        "--out",
        str(tmp_path / "out"),
        "--key",
        str(tmp_path / "key"),
    ]
    with pytest.raises(SystemExit) as stop:
        student.main([*args, "--pending"])
    message = str(stop.value)
    assert "broken.ipynb: ex-demo-derivative: no exercises.answer" in message
    assert "reads 'variance', defined in the solution of ex-demo-moments" in message
    # A chapter still being converted is copied with a note, its solutions removed all the same.
    assert student.main([*args, "--pending", "broken"]) == 0
    text = (tmp_path / "out" / "broken.ipynb").read_text()
    assert "sp.diff" not in text and "no automatic check yet" in text


def test_collapse_hides_every_solution_cell_and_no_other() -> None:
    notebook = _notebook()
    notebook["cells"][1]["metadata"]["jupyter"] = {"source_hidden": True}  # not a solution
    assert collapse_solutions.misplaced(notebook) == [1, 3, 4, 5, 6, 8, 9, 10, 12, 13, 14]
    assert collapse_solutions.collapse(notebook)
    assert collapse_solutions.misplaced(notebook) == []
    assert "jupyter" not in notebook["cells"][1]["metadata"]
    assert all(collapse_solutions.hidden(notebook["cells"][i]) for i in (3, 4, 5, 6, 13, 14))
    assert source(notebook["cells"][4]) == "\nmean = values.mean()\nvariance = values.var()"
    assert not collapse_solutions.collapse(notebook), "a second run changes nothing"


# --- The chapters' sources --------------------------------------------------------------------


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_exercise_records_its_answer_in_its_solution(path: Path) -> None:
    chapter = scan(_notebook(path), path.name)
    if path.stem in student.NOT_YET_INSTRUMENTED:
        assert chapter.problems, (
            f"{path.name} follows the convention now: remove it from "
            "NOT_YET_INSTRUMENTED in scripts/student.py"
        )
        pytest.skip(f"{path.name} is being converted ({len(chapter.problems)} problems left)")
    assert not chapter.problems, "\n".join(chapter.problems)
    for label in chapter.exercises:
        assert chapter.answer_for(label), label


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solution_cells_are_collapsed_for_jupyterlab(path: Path) -> None:
    notebook = _notebook(path)
    wrong = collapse_solutions.misplaced(notebook)
    if path.stem in NOT_YET_COLLAPSED:
        assert wrong, f"{path.name} is collapsed now: remove it from NOT_YET_COLLAPSED"
        pytest.skip(f"{path.name}: run `make strip` to collapse its solutions")
    assert not wrong, f"{path.name}: cells {wrong} need `make strip`"


# --- The real book, after `make notebooks` and `make student` -------------------------------


def _instrumented() -> list[Path]:
    return [path for path in CHAPTERS if scan(_notebook(path), path.name).answers]


def _book_labels() -> set[str]:
    return {call.label for path in CHAPTERS for call in scan(_notebook(path), path.name).answers}


def _wrong_value(value: Any, tolerance: exercises.Tolerance) -> tuple[Any, str]:
    """A known wrong answer for `value` and the words its check must say."""
    if isinstance(value, bool):
        return not value, "the other truth value"
    if isinstance(value, int):
        return value + 1, "off by one"
    if isinstance(value, str):
        return value + "?", "not the expected string"
    if isinstance(value, float | np.ndarray):
        array = np.asarray(value, dtype=float)
        if np.issubdtype(np.asarray(value).dtype, np.integer):
            return np.asarray(value) + 1, "wrong"
        if tolerance.close(2 * array, array):  # zero, or tiny next to the tolerance
            return value + 1 + 10 * tolerance.atol, "wrong"
        if tolerance.close(2 * array, array**2) or tolerance.close(2 * array, np.sqrt(abs(array))):
            return 2 * value, "wrong"  # near 2 (or 1/4), twice the answer is its square (root)
        return 2 * value, "x 2"
    if isinstance(value, sp.Basic):
        return (2 * value, "x 2") if value != 0 else (value + 1, "+ 1")
    first, _ = _wrong_value(value[0], tolerance)
    return (first, *value[1:]), "[0]"


def reference_and_wrong_answer_failures(key: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every recorded answer in `key` through `check`: the reference must pass, and a known
    wrong answer for each value (chosen by its kind) must fail with the expected words."""
    monkeypatch.setenv(exercises.KEY_ENV_VAR, str(key))
    failures = []
    for label in sorted(student.load_key(key)):
        recorded = exercises.reference(label)
        tolerance = exercises.Tolerance(recorded["rtol"], recorded["atol"])
        result = exercises.check(label, **recorded["values"])
        if not result.passed:
            failures.append(f"{label}: the reference itself fails: {result}")
        for name, value in recorded["values"].items():
            wrong, words = _wrong_value(value, tolerance)
            verdict = exercises.check(label, **{name: wrong})
            if verdict.statuses[name] != "wrong" or words not in verdict.messages[name]:
                failures.append(f"{label}.{name}: a wrong answer got {verdict.messages[name]!r}")
    return failures


def test_fixture_answers_pass_and_known_wrong_ones_fail(
    built: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert reference_and_wrong_answer_failures(built["key"], monkeypatch) == []


@pytest.mark.student
def test_key_holds_every_recorded_exercise() -> None:
    key = BUILD / "answer_key"
    assert (key / student.COMPLETE).is_file(), "run `make notebooks` (it collects the answer key)"
    assert set(student.load_key(key)) == _book_labels()
    assert set(student.load_key(BUILD / "student" / "answer_key")) == _book_labels()


@pytest.mark.student
def test_every_reference_answer_passes_and_a_known_wrong_one_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = reference_and_wrong_answer_failures(BUILD / "student" / "answer_key", monkeypatch)
    assert not failures, "\n".join(failures)


@pytest.mark.student
def test_student_copies_run_with_every_stub_unfilled(tmp_path: Path) -> None:
    """nbval-lax on _build/student, two workers: every check says "not attempted"."""
    folder = BUILD / "student"
    log = tmp_path / "checks.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            str(folder),
            "-n",
            "2",
            "--dist",
            "loadfile",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(folder),
        ],
        cwd=ROOT,
        env={**os.environ, exercises.CHECK_LOG_ENV_VAR: str(log)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    notebooks = sorted(p.name for p in folder.glob("*.ipynb"))
    assert notebooks == sorted(p.name for p in CHAPTERS)
    entries = _log(log)
    assert {entry["label"] for entry in entries} == _book_labels()
    for entry in entries:
        assert set(entry["statuses"].values()) == {"not attempted"}, entry


@pytest.mark.student
def test_a_student_copy_with_the_reference_filled_in_passes(tmp_path: Path) -> None:
    chapters = _instrumented()
    if not chapters:
        pytest.skip("no chapter records its answers yet")
    names = [p.stem for p in chapters]
    stem = next((s for s in FILLED_CHAPTER_PREFERENCE if s in names), names[0])
    folder = BUILD / "student"
    log = tmp_path / "checks.jsonl"
    filled = _fill(_notebook(folder / f"{stem}.ipynb"), _reference_code)
    _execute(filled, folder, {exercises.CHECK_LOG_ENV_VAR: str(log)})
    labels = {call.label for call in scan(_notebook(ROOT / "chapters" / f"{stem}.ipynb")).answers}
    entries = _log(log)
    assert {entry["label"] for entry in entries} == labels
    for entry in entries:
        assert set(entry["statuses"].values()) == {"correct"}, entry
