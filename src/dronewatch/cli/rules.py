"""`dronewatch rules lint` and `dronewatch rules list`: check and show the rule packs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from dronewatch.judge.classify import Classifier, check_rule_tests
from dronewatch.judge.rulepack import CATEGORIES, Rule, RuleSet, check_packs
from dronewatch.output.terminal import inline

logger = logging.getLogger(__name__)

EXIT_CLEAN = 0
EXIT_ISSUES = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `rules` command and its `lint` and `list` actions."""
    rules = subparsers.add_parser(
        "rules",
        help="validate and list the classification rule packs",
        description="Validate the rule packs (bundled and your own) and list their rules.",
    )
    actions = rules.add_subparsers(dest="rules_action", metavar="ACTION", required=True)

    lint = actions.add_parser(
        "lint",
        help="validate every pack and run every rule's test cases",
        description=(
            "Load the bundled packs and any --rules DIR, report every problem as FILE:LINE: "
            "message (schema errors, duplicate ids, YAML syntax), then run each rule's match and "
            "no_match cases through the classifier and report the failing ones the same way."
        ),
        epilog="exit codes: 0 clean, 1 issues found",
    )
    _add_rules_dirs(lint)
    lint.set_defaults(func=cmd_lint)

    show = actions.add_parser(
        "list",
        help="list the loaded rules as a table",
        description="List the loaded rules: id, vendor, category, confidence, evidence, app.",
    )
    _add_rules_dirs(show)
    show.add_argument("--vendor", metavar="V", help="only rules whose vendor contains V")
    show.add_argument("--category", choices=CATEGORIES, help="only rules of this category")
    show.set_defaults(func=cmd_list)


def _add_rules_dirs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also load the packs (*.yaml) in DIR; repeatable",
    )


def cmd_lint(args: argparse.Namespace) -> int:
    """Validate the packs and run their test cases; 0 when clean, 1 when anything is wrong."""
    return lint(args.rules, out=sys.stdout)


def lint(dirs: Sequence[Path], *, out: TextIO, bundled: bool = True) -> int:
    """Lint the bundled packs and `dirs`, writing one `FILE:LINE: message` per issue to `out`
    (each one printable line: a message may quote a pack's text or a test case's name)."""
    ruleset, issues = check_packs(dirs, bundled=bundled)
    issues.extend(check_rule_tests(ruleset, Classifier(ruleset)))
    for issue in issues:
        out.write(f"{inline(str(issue))}\n")
    cases = sum(len(r.tests.match) + len(r.tests.no_match) for r in ruleset.rules)
    summary = f"{len(ruleset.rules)} rules in {len(ruleset.packs)} packs, {cases} test cases"
    if issues:
        out.write(f"{summary}: {len(issues)} issue{'s' if len(issues) != 1 else ''}\n")
        return EXIT_ISSUES
    out.write(f"{summary}: OK\n")
    return EXIT_CLEAN


def cmd_list(args: argparse.Namespace) -> int:
    """Print the loaded rules as a table; 1 when the packs do not load."""
    ruleset, issues = check_packs(args.rules)
    if issues:
        for issue in issues:
            sys.stderr.write(f"{inline(str(issue))}\n")
        sys.stderr.write("rule packs have errors; run `dronewatch rules lint`\n")
        return EXIT_ISSUES
    rules = select(ruleset, vendor=args.vendor, category=args.category)
    sys.stdout.write(render_table(rules))
    return EXIT_CLEAN


def select(
    ruleset: RuleSet, *, vendor: str | None = None, category: str | None = None
) -> list[Rule]:
    """The rules of a vendor (case-insensitive substring) and/or a category."""
    want = vendor.casefold() if vendor else None
    return [
        r
        for r in ruleset.rules
        if (want is None or want in r.vendor.casefold())
        and (category is None or r.category == category)
    ]


def render_table(rules: Sequence[Rule]) -> str:
    """Rules as an aligned text table, one line each (every cell printable)."""
    header = ("ID", "VENDOR", "CATEGORY", "SEVERITY", "CONF", "EV", "APP")
    rows = [
        tuple(
            inline(cell)
            for cell in (
                r.id,
                r.vendor,
                r.category,
                r.severity,
                f"{r.confidence:.2f}",
                r.evidence,
                r.app,
            )
        )
        for r in rules
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.append(f"{len(rows)} rule{'s' if len(rows) != 1 else ''}")
    return "\n".join(lines) + "\n"


__all__ = ["cmd_lint", "cmd_list", "lint", "register", "render_table", "select"]
