"""fish-rollout: is the candidate version better on real traffic? Reads the prediction log, compares, decides.

Run with the function's own environment and no flags, it compares the shadow (SHADOW_MODEL_URI) with the served
version (MODEL_URI), both resolved in the registry (MLFLOW_TRACKING_URI), over the log at DATABASE_URL.
`--stable/--candidate` name the versions instead; `--revisions A B` compares two revisions of an A/B split.

Exit codes: 0 promote, 10 hold, 11 rollback; 2 a flag or setting that cannot be used; 3 the database or the
registry did not answer (or refused the change). With --json, one JSON document on stdout whatever happens."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from function.model import registry as rest
from function.model.registry import ModelUnavailable, Registry, RegistryDown
from function.model.source import URI
from function.prediction_log import quality_queries, queries
from function.quality import drift
from function.quality.comparison import MIN_LABELLED, Comparison, from_revisions, from_shadow
from function.quality.drift import Drift
from function.quality.rollout import EXIT_CODES, MARGIN, PROMOTE, ROLLBACK, Decision, decide
from function.settings import BadSetting, Settings

EXIT_USAGE, EXIT_UNREACHABLE = 2, 3
DAY = timedelta(days=1)  # drift: the last day against each version's first, as /stats has it
SERVICE = "fish-function"  # the Knative Service of knative/ (its A/B overlay names the revisions)


class Refused(Exception):
    """What the user must change, with its exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ | _overrides(args))
        versions = _versions(args, settings)
        comparison, drifts = asyncio.run(_read(settings, lambda conn: _evidence(args, conn, versions)))
        decision = decide(comparison, args.margin)
        applied = _apply(args, settings, comparison, decision)
    except BadSetting as exc:
        return _fail(args, str(exc), EXIT_USAGE)
    except Refused as exc:
        return _fail(args, str(exc), exc.code)
    _report(args, comparison, decision, applied, drifts)
    return decision.exit_code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fish-rollout",
        description="Compare a candidate model version with the stable one on logged traffic; print promote, "
        "hold or rollback (exit 0, 10, 11).",
    )
    p.add_argument("--database-url", help="the prediction log (default: DATABASE_URL)")
    p.add_argument("--tracking-uri", help="the MLflow registry (default: MLFLOW_TRACKING_URI)")
    p.add_argument(
        "--stable", metavar="VERSION", help="the served version to compare with (default: MODEL_URI's)"
    )
    p.add_argument(
        "--candidate", metavar="VERSION", help="the shadow's version (default: SHADOW_MODEL_URI's)"
    )
    p.add_argument("--revisions", nargs=2, metavar=("STABLE", "CANDIDATE"),
                   help="compare two Knative revisions of an A/B split instead of a shadow")  # fmt: skip
    p.add_argument("--since", type=datetime.fromisoformat, help="only predictions from this time (ISO 8601)")
    p.add_argument("--until", type=datetime.fromisoformat, help="only predictions before this time")
    p.add_argument("--min-labelled", type=int, default=MIN_LABELLED,
                   help=f"labelled images needed before any accuracy claim (default {MIN_LABELLED})")  # fmt: skip
    p.add_argument("--margin", type=float, default=MARGIN,
                   help=f"promote if not shown worse than this much accuracy (default {MARGIN})")  # fmt: skip
    p.add_argument("--apply", action="store_true",
                   help="act on promote/rollback: move MODEL_URI's alias (shadow), or shift the traffic (revisions)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return p


def _overrides(args) -> dict[str, str]:
    named = {"DATABASE_URL": args.database_url, "MLFLOW_TRACKING_URI": args.tracking_uri}
    return {key: value for key, value in named.items() if value}


def _versions(args, settings: Settings) -> tuple[str, str] | None:
    """(stable, candidate) versions of a shadow comparison, from the flags or resolved in the registry; None for
    revisions. Checked before the log is opened, so a setting that cannot be used is said first."""
    if not settings.database_url:
        raise Refused("no prediction log: set DATABASE_URL (or --database-url)", EXIT_USAGE)
    if args.revisions:
        return None
    stable = args.stable or _version(settings, settings.model_uri, "MODEL_URI")
    if not (args.candidate or settings.shadow_model_uri):
        raise Refused("no candidate: set SHADOW_MODEL_URI, or name it with --candidate", EXIT_USAGE)
    return stable, args.candidate or _version(settings, settings.shadow_model_uri, "SHADOW_MODEL_URI")


async def _evidence(args, conn, versions: tuple[str, str] | None) -> tuple[Comparison, list[Drift]]:
    """The comparison, and the drift of the versions compared, over one connection."""
    if versions is None:
        stats = await queries.stats(conn, args.since, args.until)
        stable, candidate = (_revision(stats, name) for name in args.revisions)
        comparison = from_revisions(stable, candidate, args.min_labelled)
    else:
        comparison = _shadow(
            args, await quality_queries.shadow_pairs(conn, args.since, args.until), *versions
        )
    return comparison, await _drift(conn, comparison)


def _shadow(args, pairs: list, stable_version: str, candidate_version: str) -> Comparison:
    found = [p for p in pairs if p.served_version == stable_version and p.shadow_version == candidate_version]
    if not found:
        seen = ", ".join(f"{p.served_version} vs {p.shadow_version} ({p.pairs})" for p in pairs) or "none"
        raise Refused(f"no shadow predictions of version {candidate_version} beside version {stable_version} "
                      f"in the log (pairs logged: {seen})", EXIT_CODES["hold"])  # fmt: skip
    return from_shadow(found[0], args.min_labelled)


async def _drift(conn, comparison: Comparison) -> list[Drift]:
    """The served predictions' drift of the versions compared (the last day against each one's first): evidence
    printed beside the decision, not a rule of it (a shifted mix may be the season, not the model)."""
    now = datetime.now(UTC)
    counts = await quality_queries.drift_counts(conn, now - DAY, now, DAY)
    versions = {comparison.stable.version, comparison.candidate.version}
    return [drift.of(entry) for entry in counts if entry.model_version in versions]


def _version(settings: Settings, uri: str, variable: str) -> str:
    match = URI.match(uri)
    if not match:
        return "local"  # a file: the function logs its version as "local"
    if match["version"]:
        return match["version"]
    try:
        return rest.resolve_alias(Registry.of(settings), match["name"], match["alias"])
    except ModelUnavailable as exc:
        raise Refused(f"{variable}: {exc}", EXIT_USAGE) from exc
    except RegistryDown as exc:
        raise Refused(f"the registry did not answer resolving {variable} ({exc}); or name the versions with "
                      "--stable and --candidate", EXIT_UNREACHABLE) from exc  # fmt: skip


def _revision(stats: list, name: str):
    rows = [row for row in stats if row.revision == name]
    if not rows:
        known = ", ".join(sorted({str(row.revision) for row in stats})) or "none"
        raise Refused(
            f"no predictions logged by revision {name!r} (revisions in the log: {known})", EXIT_USAGE
        )
    return max(rows, key=lambda row: row.predictions)


async def _read(settings: Settings, query):
    """`query(conn)` on one connection to the log; what the database says, as a Refused."""
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(settings.database_url, connect_timeout=10) as conn:
            return await query(conn)
    except psycopg.errors.UndefinedTable as exc:
        raise Refused("the log has no shadow_predictions table yet: start the function once with this "
                      "DATABASE_URL (it migrates the schema)", EXIT_UNREACHABLE) from exc  # fmt: skip
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Refused(f"the prediction log's database did not answer: {first}", EXIT_UNREACHABLE) from exc


def _apply(args, settings: Settings, comparison: Comparison, decision: Decision) -> str | None:
    """What was (or, without --apply, would be) done; None: nothing to do."""
    if decision.decision not in (PROMOTE, ROLLBACK):
        return None
    if comparison.kind == "revisions":
        keep = comparison.candidate if decision.decision == PROMOTE else comparison.stable
        patch = json.dumps({"spec": {"traffic": [{"revisionName": keep.revision, "percent": 100}]}})
        command = ["kubectl", "patch", "ksvc", SERVICE, "--type", "merge", "-p", patch]
        if not args.apply:
            return f"would run: {shlex.join(command)}"
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise Refused(f"{shlex.join(command)} failed: {first}", EXIT_UNREACHABLE)
        return f"ran: {shlex.join(command)}"
    match = URI.match(settings.model_uri)
    if decision.decision == ROLLBACK:
        return "nothing to move: the served version stays; stop the shadow (unset SHADOW_MODEL_URI)"
    if not match or not match["alias"]:
        return f"MODEL_URI {settings.model_uri} names no alias: point it at version {comparison.candidate.version}"
    target = f"alias '{match['alias']}' of '{match['name']}' -> version {comparison.candidate.version}"
    if not args.apply:
        return f"would move {target}"
    try:
        rest.set_alias(Registry.of(settings), match["name"], match["alias"], comparison.candidate.version)
    except (ModelUnavailable, RegistryDown) as exc:
        raise Refused(f"moving {target} failed: {exc}", EXIT_UNREACHABLE) from exc
    return f"moved {target}"


def _report(
    args, comparison: Comparison, decision: Decision, applied: str | None, drifts: list[Drift]
) -> None:
    if args.json:
        document = {"decision": decision.decision, "reason": decision.reason, "applied": applied,
                    "conclusive": comparison.conclusive, **asdict(comparison),
                    "drift": [asdict(entry) for entry in drifts]}  # fmt: skip
        print(json.dumps(document, default=str))
        return
    print(_table(comparison))
    for entry in drifts:
        where = f"version {entry.model_version}" + (f" ({entry.revision})" if entry.revision else "")
        if entry.level is None:
            print(f"drift of {where}: {entry.note}")
        else:
            print(f"drift of {where}: {entry.level} (class mix PSI {entry.class_mix_psi:.3f}, confidence "
                  f"{entry.confidence_psi:.3f}; 0.1 watch, 0.25 act)")  # fmt: skip
    print(f"\n{decision.decision.upper()}: {decision.reason}")
    if applied:
        print(applied)


def _table(c: Comparison) -> str:
    def accuracy(side) -> str:
        a = side.accuracy
        return "-" if a is None else f"{a.value:.1%} ({a.low:.1%}-{a.high:.1%})"

    rows = [
        ("", f"stable {c.stable.version}", f"candidate {c.candidate.version}"),
        ("revision", str(c.stable.revision or "-"), str(c.candidate.revision or "-")),
        ("predictions", str(c.stable.predictions), str(c.candidate.predictions)),
        ("labelled", str(c.stable.labelled), str(c.candidate.labelled)),
        ("accuracy (95%)", accuracy(c.stable), accuracy(c.candidate)),
        ("latency p50 / p95 ms", f"{c.stable.latency_p50_ms:.1f} / {c.stable.latency_p95_ms:.1f}",
         f"{c.candidate.latency_p50_ms:.1f} / {c.candidate.latency_p95_ms:.1f}"),
    ]  # fmt: skip
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    if c.agreement is not None:
        lines.append(f"agreement {c.agreement:.1%} of {c.stable.predictions} images")
    for served, shadow, n in c.disagreements:
        lines.append(f"  {served} -> {shadow}: {n}")
    return "\n".join(lines)


def _fail(args, message: str, code: int) -> int:
    if args.json:
        decision = "hold" if code == EXIT_CODES["hold"] else None  # nothing to compare yet: wait for traffic
        print(json.dumps({"decision": decision, "error": message, "exit_code": code}))
    else:
        print(f"fish-rollout: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
