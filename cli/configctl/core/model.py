"""Domain values shared by the pure core: locations, findings and reports.

Every value here is immutable. A :class:`Finding` names the file (relative to the
repository root, with forward slashes), the 1-based line and column, a stable rule id and
a message that never quotes a configuration value longer than a scalar's source text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class SourceLocation:
    """Where something was written: a repository-relative file and a 1-based line/column."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem found in a config tree. Findings are values; they never stop a run."""

    file: str
    line: int
    column: int
    rule: str
    message: str
    severity: Severity = Severity.ERROR
    hint: str | None = None

    @classmethod
    def at(
        cls,
        loc: SourceLocation,
        rule: str,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        hint: str | None = None,
    ) -> Finding:
        return cls(
            file=loc.file,
            line=loc.line,
            column=loc.column,
            rule=rule,
            message=message,
            severity=severity,
            hint=hint,
        )

    @property
    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.rule, self.message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "message": self.message,
        }
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """All findings of one run, errors and warnings apart, each sorted by file and line."""

    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.errors

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> Report:
        unique = {(f.sort_key, f.severity): f for f in findings}
        ordered = sorted(unique.values(), key=lambda f: f.sort_key)
        return cls(
            errors=tuple(f for f in ordered if f.severity is Severity.ERROR),
            warnings=tuple(f for f in ordered if f.severity is Severity.WARNING),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of a snapshot: its bytes, or the reason it cannot be read as a config file."""

    data: bytes = b""
    symlink: bool = False
    size: int = field(default=0)
