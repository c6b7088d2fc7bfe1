"""udm.exercises: answers recorded by the book, checked for the student, with what is off."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch

from udm import exercises

ALPHA, T = sp.symbols("alpha t", positive=True)
ARRAY = np.array([[1.0, 2.0], [3.0, 4.5]])
ANSWERS = {
    "var": 0.25,
    "steps": 7,
    "flag": True,
    "schedule": "cosine",
    "table": ARRAY,
    "expr": sp.sqrt(ALPHA) / (1 - ALPHA),
    "pair": (1.5, 3),
    "matrix": sp.Matrix([[ALPHA, 1], [0, ALPHA**2]]),
}


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A key with one exercise holding every kind of answer, and one with a log-likelihood."""
    folder = tmp_path / "answer_key"
    monkeypatch.setenv(exercises.KEY_ENV_VAR, str(folder))
    exercises.answer("ex-demo-all", rtol=1e-3, **ANSWERS)
    exercises.answer("ex-demo-nll", nll=1.2, rtol=1e-4, atol=1e-6)
    return folder


def _message(result: exercises.CheckResult, name: str) -> str:
    return result.messages[name]


def test_reference_answers_pass_and_print_one_line_per_value(
    key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = exercises.check("ex-demo-all", **ANSWERS)
    assert result.passed and result.attempted
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ex-demo-all"
    assert lines[1:] == [f"  {name}: correct" for name in ANSWERS]


def test_equal_forms_pass(key: Path) -> None:
    """Other types and other ways of writing the same answer are not held against a student."""
    alpha = sp.Symbol("alpha")  # no assumptions: matched by name
    result = exercises.check(
        "ex-demo-all",
        var=np.float32(0.25),
        steps=torch.tensor(7),
        flag=np.True_,
        table=torch.tensor(ARRAY) * (1 + 1e-4),
        expr=sp.sqrt(alpha) * (1 - alpha) ** -1,
        pair=[1.5, 3.0],
        matrix=sp.ImmutableMatrix([[alpha, 1], [0, alpha * alpha]]),
        schedule="cosine",
    )
    assert result.passed, result


def test_ellipsis_is_not_attempted_never_an_error(key: Path) -> None:
    stubs = {name: ... for name in ANSWERS}
    result = exercises.check("ex-demo-all", **stubs)
    assert not result.attempted and not result.passed
    assert set(result.statuses.values()) == {"not attempted"}
    partly = exercises.check("ex-demo-all", var=0.25)
    assert partly.attempted and not partly.passed
    assert partly.statuses["var"] == "correct" and partly.statuses["steps"] == "not attempted"
    assert exercises.check("ex-demo-all", pair=(..., ...)).statuses["pair"] == "not attempted"


@pytest.mark.parametrize(
    ("name", "wrong", "expected"),
    [
        ("var", -0.25, "the sign is flipped"),
        ("var", 0.5, "square root of the answer (a standard deviation where a variance"),
        ("var", 0.0625, "square of the answer (a variance where a standard deviation"),
        ("var", 0.25 * math.pi, "constant factor: yours = answer x pi"),
        ("var", 0.125, "constant factor: yours = answer / 2"),
        ("var", 0.2504, "close but outside the tolerance: relative error 0.0016"),
        ("var", 0.4, "relative error 0.6"),
        (
            "var",
            np.array([0.25]),
            "expected a single number, got an array of shape (1,); use .item()",
        ),
        ("var", True, "expected numbers, got bool"),
        ("var", "0.25", "expected real numbers"),
        ("steps", 8, "off by one (1 too large)"),
        ("steps", -7, "the sign is flipped"),
        ("steps", 7.5, "expected an integer, got the non-integer 7.5"),
        ("flag", 1, "expected True or False, got int"),
        ("schedule", "Cosine ", "differs only in upper/lower case"),
        ("table", 2 * ARRAY, "constant factor: yours = answer x 2"),
        ("table", 1.7 * ARRAY, "constant factor: yours = answer x 1.7"),
        ("table", ARRAY + 0.3, "additive constant: yours = answer +0.3"),
        ("table", ARRAY.T, "the values are right but transposed"),
        (
            "table",
            ARRAY.ravel(),
            "shape (4,) where (2, 2) is expected: the values are right, reshape",
        ),
        ("table", ARRAY[:1], "shape (1, 2) where (2, 2) is expected"),
        ("table", ARRAY.astype(np.complex128), "expected real numbers"),
        ("table", ARRAY**2, "square of the answer"),
        ("expr", -sp.sqrt(ALPHA) / (1 - ALPHA), "the sign is flipped"),
        ("expr", ALPHA / (1 - ALPHA) ** 2, "square of the answer"),
        ("expr", 2 * sp.sqrt(ALPHA) / (1 - ALPHA), "constant factor: yours = answer x 2"),
        ("expr", sp.sqrt(ALPHA) * ALPHA / (1 - ALPHA), "a factor: yours = answer x alpha"),
        ("expr", sp.sqrt(ALPHA) / (1 - ALPHA) + 1, "additive constant: yours = answer + 1"),
        ("expr", sp.sqrt(T) / (1 - ALPHA), "wrong symbols: uses t, which the answer does not"),
        ("expr", sp.sqrt(T) / (1 - T), "uses t, which the answer does not; lacks alpha"),
        ("expr", 0.5, "wrong symbols: lacks alpha"),
        ("expr", "sqrt(alpha)", "expected a SymPy expression, got str"),
        ("pair", (1.5,), "expected 2 values, got 1"),
        ("pair", (1.6, 3), "[0] relative error 0.067"),
        ("pair", (1.5, ...), "[1] not attempted"),
        ("pair", 1.5, "expected a tuple of 2 values, got float"),
        (
            "matrix",
            sp.Matrix([[ALPHA, 1], [0, -(ALPHA**2)]]),
            "1 entry differs; entry (1, 1): the sign",
        ),
        ("matrix", sp.Matrix([[ALPHA, 1]]), "shape (1, 2) where (2, 2) is expected"),
    ],
)
def test_typical_wrong_answers_say_what_is_off(
    key: Path, name: str, wrong: object, expected: str
) -> None:
    result = exercises.check("ex-demo-all", **{name: wrong})
    assert not result.passed
    assert result.statuses[name] == "wrong"
    message = _message(result, name)
    assert message.startswith("wrong: ")
    assert expected in message, message


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (1.2 + 0.5 * math.log(2 * math.pi), "yours = answer + log(2 pi)/2"),
        (1.2 / math.log(2), "yours = answer / log(2) (nats for bits, or bits for nats?)"),
        (1.2 - 1, "yours = answer - 1"),
    ],
)
def test_familiar_constants_are_named(key: Path, wrong: float, expected: str) -> None:
    assert expected in _message(exercises.check("ex-demo-nll", nll=wrong), "nll")


def test_symbolic_identity_sympy_cannot_simplify_passes_numerically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(exercises.KEY_ENV_VAR, str(tmp_path))
    x = sp.Symbol("x", positive=True)
    exercises.answer("ex-demo-gamma", g=sp.gamma(x + 1) / sp.gamma(x))
    result = exercises.check("ex-demo-gamma", g=x)
    assert result.passed, result


def test_unknown_names_are_an_error_naming_the_right_ones(key: Path) -> None:
    with pytest.raises(TypeError, match="no answer named vra; its answers: var, steps"):
        exercises.check("ex-demo-all", vra=0.25)


def test_missing_key_says_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exercises.KEY_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="make student"):
        exercises.check("ex-demo-all", var=...)
    monkeypatch.setenv(exercises.KEY_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="does not exist: run `make student`"):
        exercises.check("ex-demo-all", var=...)


def test_missing_exercise_in_the_key_says_how_to_rebuild(key: Path) -> None:
    with pytest.raises(LookupError, match="has no answer for ex-demo-other: run `make student`"):
        exercises.check("ex-demo-other", var=1.0)


def test_key_is_found_next_to_the_notebook_or_above(
    key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(exercises.KEY_ENV_VAR)
    nested = tmp_path / "chapters" / "deeper"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert exercises.find_key() == key.resolve()
    assert exercises.check("ex-demo-nll", nll=1.2).passed


def test_key_may_be_one_json_file(
    key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = {path.stem: json.loads(path.read_text()) for path in key.glob("*.json")}
    single = tmp_path / "key.json"
    single.write_text(json.dumps(records))
    monkeypatch.setenv(exercises.KEY_ENV_VAR, str(single))
    assert exercises.check("ex-demo-nll", nll=1.2).passed
    assert not exercises.check("ex-demo-nll", nll=-1.2).passed


def test_every_check_is_logged_when_asked(
    key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv(exercises.CHECK_LOG_ENV_VAR, str(log))
    exercises.check("ex-demo-nll", nll=...)
    exercises.check("ex-demo-nll", nll=1.2)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries == [
        {"label": "ex-demo-nll", "statuses": {"nll": "not attempted"}},
        {"label": "ex-demo-nll", "statuses": {"nll": "correct"}},
    ]


def test_decode_inverts_encode() -> None:
    for name, value in ANSWERS.items():
        back = exercises.decode(exercises.encode(name, value))
        if isinstance(value, np.ndarray):
            assert back.dtype == np.float64 and np.array_equal(back, value)
        elif isinstance(value, sp.MatrixBase):
            assert back == sp.ImmutableMatrix(value)
        else:
            assert back == value and type(back) is type(value), name
    assert exercises.decode(exercises.encode("i", np.arange(3))).dtype == np.int64


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "Symbol('x').__class__",
        "Integer(1) + Integer(2)",
        "[c for c in ()]",
        "lambdify(Symbol('x'), Symbol('x'))",
        "sympify('x')",
    ],
)
def test_srepr_reader_runs_no_code(text: str) -> None:
    with pytest.raises(ValueError, match="not a SymPy expression"):
        exercises.parse_srepr(text)


def test_srepr_reader_reads_what_srepr_writes() -> None:
    f = sp.Function("f")
    for expression in (
        sp.pi * ALPHA,
        sp.Float(-1.5),
        f(ALPHA) + sp.I,
        sp.oo,
        sp.exp(-(T**2)),
        sp.Piecewise((T, T > 1), (0, True)),
    ):
        assert exercises.parse_srepr(sp.srepr(expression)) == expression


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.25, "a number"),
        (7, "an integer"),
        (True, "True or False"),
        ("cosine", "a string"),
        (ARRAY, "a float array of shape (2, 2)"),
        (np.arange(3), "an integer array of shape (3,)"),
        (torch.tensor(2.5), "a number"),
        (sp.sqrt(ALPHA) / (1 - T), "a SymPy expression in alpha, t"),
        (sp.Rational(1, 3), "a SymPy expression (a number, exact)"),
        (sp.Matrix([[ALPHA, 1]]), "a 1x2 SymPy matrix in alpha"),
        ((1.5, 3), "a tuple of 2: a number; an integer"),
    ],
)
def test_hint_names_the_kind_never_the_value(value: object, expected: str) -> None:
    assert exercises.hint(exercises.encode("v", value)) == expected


def test_a_zero_dimensional_answer_takes_a_plain_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(exercises.KEY_ENV_VAR, str(tmp_path))
    exercises.answer("ex-demo-snr", snr=torch.tensor(0.005, dtype=torch.float64), rtol=1e-3)
    assert exercises.check("ex-demo-snr", snr=0.005).passed
    assert "yours = answer x 2" in exercises.check("ex-demo-snr", snr=0.01).messages["snr"]
