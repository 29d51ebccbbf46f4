"""Rule files: one rule a YAML file, loaded from the packaged pack and a user directory, and re-read
when a file changes while the worker runs."""

from __future__ import annotations

import logging
from pathlib import Path

from alerts.errors import RuleError, RuleProblem
from alerts.rules import PACKAGED_RULES, Rule, parse_rule

log = logging.getLogger(__name__)


def load_file(path: Path) -> Rule:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError([RuleProblem(str(path), None, None, f"cannot read the file: {exc}")]) from None
    rule = parse_rule(text, str(path))
    expected = path.stem
    if rule.id != expected:
        raise RuleError([RuleProblem(str(path), 1, "id", f"the id {rule.id!r} must match the file name "
                                                          f"({expected}.yml), so one file holds one rule")])
    return rule


def load_rules(*directories: Path | str | None) -> dict[str, Rule]:
    """Every rule of the directories, later ones overriding earlier ones by id; all problems at once."""
    rules: dict[str, Rule] = {}
    problems: list[RuleProblem] = []
    for directory in directories:
        if not directory:
            continue
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.y*ml")):
            try:
                rules[path.stem] = load_file(path)
            except RuleError as exc:
                problems.extend(exc.problems)
    if problems:
        raise RuleError(problems)
    return rules


class RuleSource:
    """The rules of some directories, re-read when a file changes (evaluations pick up edits).

    A file that turns invalid keeps its last valid version in force and the problem is reported
    (``problems``), so a typo in one rule never stops the others from being evaluated.
    """

    def __init__(self, *directories: Path | str | None) -> None:
        self.directories = tuple(Path(d) for d in directories if d)
        self.problems: list[RuleProblem] = []
        self._files: dict[Path, tuple[tuple[int, int], Rule | None, list[RuleProblem]]] = {}

    def current(self) -> dict[str, Rule]:
        files: dict[Path, tuple[tuple[int, int], Rule | None, list[RuleProblem]]] = {}
        rules: dict[str, Rule] = {}
        for directory in self.directories:
            for path in sorted(directory.glob("*.y*ml")) if directory.is_dir() else []:
                try:
                    stat = path.stat()
                except OSError:
                    continue  # removed while listing
                signature = (stat.st_mtime_ns, stat.st_size)
                before, rule, problems = self._files.get(path, (None, None, []))
                if signature != before:
                    try:
                        rule, problems = load_file(path), []
                    except RuleError as exc:
                        problems = list(exc.problems)
                        if rule is not None:
                            problems.append(RuleProblem(str(path), None, None,
                                                        "its last valid version stays in force until this is fixed"))
                        for problem in problems:  # once per change of the file, not once per evaluation
                            log.error("alert rule problem: %s", problem)
                files[path] = (signature, rule, problems)
                if rule is not None:
                    rules[rule.id] = rule
        self._files = files
        self.problems = [p for _, _, found in files.values() for p in found]
        return rules


def default_directories(user_dir: Path | str | None) -> tuple[Path, ...]:
    return (PACKAGED_RULES,) + ((Path(user_dir),) if user_dir else ())
