"""Where a chapter's exercises, solutions and recorded answers are, read from its cells.

The convention (see `udm.exercises`): an exercise is an `{exercise}` directive with
`:label: ex-...`; its solution is every cell from the markdown cell that opens with the
`{solution-start} ex-...` fence through the markdown cell that holds only the `{solution-end}`
fence; the solution's last code cell calls `exercises.answer("ex-...", name=value, ...)`.
`scan` finds all of it and lists every departure from the convention as a problem, including
a variable defined in a solution and used after it (the student copies delete solutions).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

FENCE = r"(?:`{3,}|:{3,})"
EXERCISE = re.compile(
    rf"^\s*{FENCE}\{{exercise(?:-start)?\}}[^\n]*\n((?:[ \t]*:[\w-]+:[^\n]*\n)*)", re.M
)
LABEL_OPTION = re.compile(r"^\s*:label:\s*(\S+)", re.M)
# A whole `{solution-start} ex-...` or `{solution-end}` directive: fence, options, closing fence.
SOLUTION_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|:{3,})\{solution-(?P<kind>start|end)\}[ \t]*(?P<label>\S*)[^\n]*\n"
    r"(?:[ \t]*:[\w-]+:[^\n]*\n)*[ \t]*(?P=fence)[ \t]*$\n?",
    re.M,
)
ANSWER_FUNCTIONS = ("answer",)


def source(cell: dict[str, Any]) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else text


def python_source(cell: dict[str, Any]) -> str:
    """A code cell's source with IPython magics and shell lines blanked out (line numbers kept)."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source(cell).splitlines()
    )


@dataclass(frozen=True)
class AnswerCall:
    """One `exercises.answer("ex-...", name=value, ...)` call: its label and answer names."""

    label: str
    names: tuple[str, ...]
    cell: int


@dataclass(frozen=True)
class Span:
    """A solution: cells `start` through `end` (inclusive) answer exercise `label`."""

    label: str
    start: int
    end: int

    def __contains__(self, index: int) -> bool:
        return self.start <= index <= self.end


@dataclass
class Chapter:
    """What `scan` found in one notebook."""

    name: str
    exercises: dict[str, int] = field(default_factory=dict)  # label -> cell index
    spans: list[Span] = field(default_factory=list)
    answers: list[AnswerCall] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Cells where a solution fence shares the cell with text outside the solution (a problem;
    # a student copy keeps that text): cell index -> the text outside the solution.
    partial_cells: dict[int, str] = field(default_factory=dict)

    def span_of(self, index: int) -> Span | None:
        return next((span for span in self.spans if index in span), None)

    def answer_for(self, label: str) -> AnswerCall | None:
        """The answer call of `label` inside its solution, if exactly one is there."""
        span = next((span for span in self.spans if span.label == label), None)
        calls = [a for a in self.answers if a.label == label and span and a.cell in span]
        return calls[0] if len(calls) == 1 else None

    @property
    def instrumented(self) -> bool:
        """Every exercise records its answer, and nothing departs from the convention."""
        return not self.problems


def _answer_calls(tree: ast.AST, cell: int) -> tuple[list[AnswerCall], list[str]]:
    calls, problems = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        is_answer = (
            isinstance(func, ast.Attribute)
            and func.attr in ANSWER_FUNCTIONS
            and isinstance(func.value, ast.Name)
            and func.value.id == "exercises"
        ) or (isinstance(func, ast.Name) and func.id in ANSWER_FUNCTIONS)
        if not is_answer:
            continue
        first = node.args[0] if node.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            problems.append(
                f"cell {cell}: answer(...) needs the exercise label as a string literal"
            )
            continue
        names = tuple(k.arg for k in node.keywords if k.arg and k.arg not in ("rtol", "atol"))
        if any(k.arg is None for k in node.keywords):
            problems.append(f"cell {cell}: answer({first.value!r}, **...) must name its values")
        calls.append(AnswerCall(first.value, names, cell))
    return calls, problems


class _Names(ast.NodeVisitor):
    """Names a cell binds at module level, and names it reads before binding them itself."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.read_first: set[str] = set()
        self._scopes: list[set[str]] = []

    def _bind(self, name: str) -> None:
        (self._scopes[-1] if self._scopes else self.bound).add(name)

    def _read(self, name: str) -> None:
        if any(name in scope for scope in self._scopes) or name in self.bound:
            return
        self.read_first.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self._bind(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)  # the right-hand side is read before the targets are bound
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self.visit(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value:
            self.visit(node.value)
        self.visit(node.target)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            self._bind((alias.asname or alias.name).split(".")[0])

    visit_ImportFrom = visit_Import

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
            self._bind(node.name)
        arguments = node.args
        self._scopes.append(
            {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}
            | {a.arg for a in (arguments.vararg, arguments.kwarg) if a}
        )
        for statement in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(statement)
        self._scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            self.visit(base)
        self._bind(node.name)
        self._scopes.append(set())
        for statement in node.body:
            self.visit(statement)
        self._scopes.pop()

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> None:
        self._scopes.append(set())
        for generator in node.generators:
            self.visit(generator.iter)
            self.visit(generator.target)
            for condition in generator.ifs:
                self.visit(condition)
        for part in ("elt", "key", "value"):
            if hasattr(node, part):
                self.visit(getattr(node, part))
        self._scopes.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension


def cell_names(cell: dict[str, Any]) -> tuple[set[str], set[str]] | None:
    """(names bound, names read before bound) of a code cell; None if it does not parse."""
    try:
        tree = ast.parse(python_source(cell))
    except SyntaxError:
        return None
    names = _Names()
    names.visit(tree)
    return names.bound, names.read_first


def _find_spans(cells: list[dict[str, Any]], chapter: Chapter) -> None:
    """Solution spans from the fences, in order; text that shares a cell with a fence but lies
    outside the solution is kept in `chapter.partial_cells` (and is a problem)."""
    open_span: tuple[str, int] | None = None
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        text, kept, position = source(cell), [], 0
        events = list(SOLUTION_FENCE.finditer(text))
        for event in events:
            if open_span is None:
                kept.append(text[position : event.start()])
            position = event.end()
            if event["kind"] == "start":
                if open_span:
                    chapter.problems.append(
                        f"solution of {open_span[0]} (cell {open_span[1]}) is not closed before "
                        f"the solution of {event['label']} starts (cell {index})"
                    )
                open_span = (event["label"], index)
                if text[: event.start()].strip():
                    chapter.problems.append(
                        f"cell {index}: the {{solution-start}} fence must open its markdown cell"
                    )
            elif open_span is None:
                chapter.problems.append(f"cell {index}: {{solution-end}} without a solution-start")
            else:
                chapter.spans.append(Span(open_span[0], open_span[1], index))
                open_span = None
                if text[: event.start()].strip() or text[event.end() :].strip():
                    chapter.problems.append(
                        f"cell {index}: the {{solution-end}} fence must be alone in its cell"
                    )
        if events and open_span is None:
            kept.append(text[position:])
        if "".join(kept).strip():
            chapter.partial_cells[index] = "".join(kept).strip() + "\n"
    if open_span:
        chapter.problems.append(
            f"solution of {open_span[0]} (cell {open_span[1]}) is never closed: "
            "add a markdown cell holding only the {solution-end} fence"
        )


def _check_answers(cells: list[dict[str, Any]], chapter: Chapter) -> None:
    for label in chapter.exercises:
        spans = [span for span in chapter.spans if span.label == label]
        if len(spans) != 1:
            chapter.problems.append(f"{label}: {len(spans)} solutions (expected one)")
            continue
        span = spans[0]
        calls = [a for a in chapter.answers if a.label == label]
        inside = [a for a in calls if a.cell in span]
        if not inside:
            chapter.problems.append(
                f"{label}: no exercises.answer({label!r}, ...) call in its solution "
                f"(cells {span.start}-{span.end})"
            )
            continue
        if len(calls) > 1:
            chapter.problems.append(f"{label}: {len(calls)} answer(...) calls (expected one)")
        code_cells = [i for i in range(span.start, span.end + 1) if cells[i]["cell_type"] == "code"]
        if inside[-1].cell != code_cells[-1]:
            chapter.problems.append(
                f"{label}: answer(...) must be in the solution's last code cell ({code_cells[-1]})"
            )
        if not inside[-1].names:
            chapter.problems.append(f"{label}: answer(...) records no named value")
    for span in chapter.spans:
        if span.label not in chapter.exercises:
            chapter.problems.append(f"cell {span.start}: solution of unknown exercise {span.label}")
    for call in chapter.answers:
        span = chapter.span_of(call.cell)
        if span is None or span.label != call.label:
            where = f"the solution of {span.label}" if span else "no solution"
            chapter.problems.append(f"cell {call.cell}: answer({call.label!r}) sits in {where}")


def _check_names(cells: list[dict[str, Any]], chapter: Chapter) -> None:
    """Solution variables used after the solution; answer names that shadow chapter variables.

    A name bound in a solution and read later, before any later cell outside a solution binds
    it, is gone (or has another value) in the student copy. A stub `name = ...` for an
    answer rebinds `name`: it must not be a chapter variable read after the exercise.
    """
    from_solution: dict[str, str] = {}  # name -> label of the solution that bound it
    stubs: dict[str, str] = {}  # answer name -> label, while the stub's value is `...`
    by_label = {call.label: call for call in chapter.answers}
    for index, cell in enumerate(cells):
        span = chapter.span_of(index)
        if span and index == span.end and span.label in by_label:
            for name in by_label[span.label].names:
                stubs[name] = span.label
        if cell["cell_type"] != "code":
            continue
        names = cell_names(cell)
        if names is None:
            chapter.problems.append(f"cell {index}: not valid Python")
            continue
        bound, read_first = names
        if span:
            for name in bound:
                from_solution.setdefault(name, span.label)
            continue
        for name in sorted(read_first):
            if name in from_solution:
                chapter.problems.append(
                    f"cell {index} reads {name!r}, defined in the solution of "
                    f"{from_solution[name]}: the student copy has no solutions; define it "
                    "outside the solution"
                )
            elif name in stubs:
                chapter.problems.append(
                    f"cell {index} reads {name!r}: the student stub of {stubs[name]} sets "
                    f"{name} = ...; rename that answer"
                )
        for name in bound:
            from_solution.pop(name, None)
            stubs.pop(name, None)


def scan(notebook: dict[str, Any], name: str = "") -> Chapter:
    """The exercises, solution spans and answer calls of `notebook`, with every problem."""
    cells = notebook["cells"]
    chapter = Chapter(name=name)
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            for match in EXERCISE.finditer(source(cell)):
                label = LABEL_OPTION.search(match[1])
                if not label:
                    chapter.problems.append(f"cell {index}: an exercise without :label:")
                elif label[1] in chapter.exercises:
                    chapter.problems.append(f"cell {index}: exercise label {label[1]} used twice")
                else:
                    chapter.exercises[label[1]] = index
        elif cell["cell_type"] == "code":
            try:
                tree = ast.parse(python_source(cell))
            except SyntaxError:
                continue  # reported by _check_names
            calls, problems = _answer_calls(tree, index)
            chapter.answers += calls
            chapter.problems += problems
    _find_spans(cells, chapter)
    _check_answers(cells, chapter)
    _check_names(cells, chapter)
    return chapter


def bound_before(cells: list[dict[str, Any]], index: int, chapter: Chapter) -> set[str]:
    """Names bound by code cells outside solutions before cell `index`."""
    names: set[str] = set()
    for i, cell in enumerate(cells[:index]):
        if cell["cell_type"] == "code" and chapter.span_of(i) is None:
            found = cell_names(cell)
            if found:
                names |= found[0]
    return names
