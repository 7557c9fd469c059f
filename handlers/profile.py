"""``guestkit.profile``: security, compliance, hardening and performance checks on a guest.

``profile_tree`` runs the catalogue (``handlers.guestos.checks``) over any ``GuestTree``;
``ProfileHandler`` opens the image first. Each check is about a subject (the init system the guest
boots, its kernel, a package, a file); a guest without it, or on which the check cannot apply, gets
the check listed under ``not_applicable`` with the subject and the reason, never as a finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from app.plugin.errors import ErrorCode, JobError
from app.plugin.handler import Handler, HandlerContext, HandlerResult
from handlers.guestos.checks import CATALOGUE, PROFILES, Facts, NotApplicable
from handlers.imagejob import image_facts, open_image, phase_reporter, report_destination, write_output
from handlers.payloads import SEVERITY_ORDER, ProfilePayloadV1
from handlers.tree import GuestTree


def _severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity)


def profile_tree(tree: GuestTree, profiles: Iterable[str] = PROFILES, threshold: str = "info", *,
                 include_remediation: bool = True) -> dict[str, Any]:
    """Run the checks of ``profiles``; findings at or above ``threshold``, most severe first.

    A check raising an unexpected error is reported under ``errors`` rather than aborting the rest.
    """
    selected = [p for p in PROFILES if p in set(profiles)]
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        raise ValueError(f"unknown profiles {unknown}; choose from {list(PROFILES)}")
    facts = Facts(tree)
    findings: list[dict[str, Any]] = []
    below_threshold = 0
    not_applicable: list[dict[str, Any]] = []
    passed: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in CATALOGUE:
        if item.profile not in selected:
            continue
        try:
            absent = item.subject.absent(facts)
            found = item.run(facts) if absent is None else []
        except NotApplicable as reason:
            absent = str(reason)
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide every other result
            errors.append({"id": item.id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if absent is not None:
            not_applicable.append({"id": item.id, "profile": item.profile, "title": item.title,
                                   "subject": item.subject.describe(), "reason": absent})
            continue
        if not found:
            passed.append(item.id)
        elif _severity_rank(item.severity) < _severity_rank(threshold):
            below_threshold += len(found)
        for proof in found if _severity_rank(item.severity) >= _severity_rank(threshold) else []:
            finding = {**item.describe(), "evidence": proof}
            if not include_remediation:
                finding.pop("remediation")
            findings.append(finding)
    findings.sort(key=lambda f: -_severity_rank(f["severity"]))
    by_severity = {severity: sum(1 for f in findings if f["severity"] == severity) for severity in SEVERITY_ORDER}
    return {
        "profiles": selected,
        "severity_threshold": threshold,
        "summary": {"checks": sum(1 for item in CATALOGUE if item.profile in selected),
                    "findings": len(findings), "by_severity": by_severity, "passed": len(passed),
                    "not_applicable": len(not_applicable), "below_threshold": below_threshold,
                    "errors": len(errors)},
        "findings": findings,
        "not_applicable": not_applicable,
        "passed": passed,
        "errors": errors,
        "truncated": tree.truncated,  # what the job's limits cut from the files the checks read
    }


def catalogue() -> list[dict[str, Any]]:
    """Every check's id, profile, severity, title, description, remediation, references and subject
    (what a guest must have for the check to apply)."""
    return [{**item.describe(), "subject": item.subject.describe()} for item in CATALOGUE]


class ProfileHandler(Handler):
    operation = "guestkit.profile"
    payload_models = {1: ProfilePayloadV1}
    features = ("profile",)

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, ProfilePayloadV1)
        destination = report_destination(ctx, payload.output, {"image.path": payload.image})  # before any work starts
        with open_image(ctx, payload.image) as (guest, tree):
            report_phase = phase_reporter(ctx)
            report_phase("os_detection", 45, "reading guest facts")
            report_phase("security_scan", 60, f"running the {', '.join(payload.profiles)} checks")
            report = profile_tree(tree, payload.profiles, payload.options.severity_threshold,
                                  include_remediation=payload.output.include_remediation)
            ctx.report_progress("result_generation", 90, f"{report['summary']['findings']} findings")
            report = {"image": image_facts(guest), **report}
        written = write_output(ctx, destination, payload.output.overwrite, report)
        critical = [f for f in report["findings"] if f["severity"] == "critical"]
        ctx.report_progress("cleanup", 100, "profile complete")
        if payload.options.fail_on_critical and critical:
            raise JobError(
                ErrorCode.EXECUTION_ERROR,
                f"{len(critical)} critical finding(s): {', '.join(sorted({f['id'] for f in critical}))}",
                details={"report": report, "findings": report["findings"], "critical": len(critical),
                         "output": written},
                recoverable=False, phase="result_generation",
            )
        return HandlerResult(data=report, primary=written, artifacts=[written] if written else [])
