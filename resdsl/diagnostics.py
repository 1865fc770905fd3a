"""Diagnostics: source spans, error records and their rustc-style rendering.

A spec error is never a Python traceback. Every check in resdsl produces a
:class:`Diagnostic`; a run collects them in a :class:`Diagnostics` list and raises
:class:`SpecError` once, carrying all of them, sorted and de-duplicated.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True, order=True)
class Span:
    """A region of a source file; lines and columns count from 1."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


#: Used for things that have no place in a file (command-line options, built-ins).
NO_SPAN = Span("<builtin>", 0, 0, 0, 0)


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a spec: a stable code, a lowercase message and where it is."""

    code: str
    message: str
    span: Span
    label: str = ""
    hint: str = ""
    notes: tuple[str, ...] = ()
    severity: str = "error"

    def sort_key(self) -> tuple:
        return (self.span.path, self.span.line, self.span.column, self.code, self.message)


class SpecError(Exception):
    """Raised when a spec has errors; ``diagnostics`` holds every one found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        unique: dict[tuple, Diagnostic] = {}
        for d in diagnostics:  # the first of duplicates stays: its note names the first instance
            unique.setdefault((d.sort_key(), d.label, d.hint), d)
        self.diagnostics: list[Diagnostic] = sorted(unique.values(), key=Diagnostic.sort_key)
        first = self.diagnostics[0] if self.diagnostics else None
        super().__init__(f"{first.span}: {first.message}" if first else "spec error")

    def render(self, sources: SourceCache | None = None) -> str:
        sources = sources or SourceCache()
        return "\n".join(render(d, sources) for d in self.diagnostics)


class Note(UserWarning):
    """Something worth telling the user that is not an error (weights converted to
    float32); the CLI prints it as ``resdsl: note: …``."""


class UsageError(Exception):
    """A problem with how resdsl was called (not with the spec): exit status 2."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


@dataclass
class Diagnostics:
    """A collector: checks append, the driver raises once at the end of a phase."""

    items: list[Diagnostic] = field(default_factory=list)
    limit: int = 50

    def error(self, code: str, message: str, span: Span, *, label: str = "", hint: str = "",
              notes: tuple[str, ...] = ()) -> None:
        if len(self.items) < self.limit:
            self.items.append(Diagnostic(code, message, span, label, hint, notes))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for d in diagnostics:
            if len(self.items) < self.limit:
                self.items.append(d)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A hint naming the closest candidates, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return ""
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


class SourceCache:
    """Source texts by path, for excerpts; texts given to ``loads`` are registered here."""

    def __init__(self) -> None:
        self._texts: dict[str, list[str]] = {}

    def add(self, path: str, text: str) -> None:
        self._texts[path] = text.splitlines()

    def paths(self) -> list[str]:
        """The files whose text is here (every spec and import a run read)."""
        return list(self._texts)

    def line(self, path: str, number: int) -> str | None:
        if path not in self._texts:
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace")
            except OSError:
                return None
            self.add(path, text)
        lines = self._texts[path]
        return lines[number - 1] if 0 < number <= len(lines) else None


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (ESC, BEL…) become their visible
    Unicode pictures (␛, ␇), one character each so that carets stay aligned; C1 controls
    and bidirectional overrides become �."""
    return text.translate(_PRINTABLE)


_PRINTABLE = {c: 0x2400 + c for c in range(0x20)} | {0x7F: 0x2421} | {
    c: 0xFFFD for c in [*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}

#: Excerpts of longer lines are cut to a window of this many characters around the caret.
EXCERPT_WIDTH = 120


def render(d: Diagnostic, sources: SourceCache) -> str:
    """Render like rustc/ruff: header, excerpt with caret, label, hint and notes; control
    characters from the spec (a string literal holding ESC) are shown, not sent."""
    clean = replace(d, message=printable(d.message), label=printable(d.label), hint=printable(d.hint),
                    notes=tuple(map(printable, d.notes)),
                    span=replace(d.span, path=printable(d.span.path)))
    return _render(clean, sources, d.span.path)


def _render(d: Diagnostic, sources: SourceCache, path: str) -> str:
    s = d.span
    out = [f"{s.path}:{s.line}:{s.column}: {d.severity}[{d.code}]: {d.message}"] if s.line else [
        f"{s.path}: {d.severity}[{d.code}]: {d.message}"]
    text = sources.line(path, s.line) if s.line else None
    if text is not None:
        gutter = " " * len(str(s.line))
        text = printable(text.expandtabs(1))
        start = max(s.column - 1, 0)
        if s.end_line > s.line:  # a span over several lines: underline the rest of the first
            end = len(text.rstrip())
        else:
            end = s.end_column - 1 if s.end_column > s.column else start + 1
        end = min(max(end, start + 1), max(len(text), start + 1))
        if len(text) > EXCERPT_WIDTH:  # a very long line: show a window around the caret
            lo = max(0, min(start - EXCERPT_WIDTH // 4, len(text) - EXCERPT_WIDTH))
            hi = lo + EXCERPT_WIDTH
            pre, post = ("…" if lo else ""), ("…" if hi < len(text) else "")
            text = pre + text[lo:hi] + post
            start, end = start - lo + len(pre), min(end, hi) - lo + len(pre)
        out += [f"{gutter} |", f"{s.line} | {text}",
                f"{gutter} | {' ' * start}{'^' * (end - start)}{(' ' + d.label) if d.label else ''}",
                f"{gutter} |"]
    elif d.label:
        out.append(f"  = {d.label}")
    if d.hint:
        out.append(f"  = help: {d.hint}")
    out += [f"  = note: {n}" for n in d.notes]
    return "\n".join(out)
