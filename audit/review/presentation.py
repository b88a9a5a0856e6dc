"""How a record reads on the review screens: the raw JSONL record pulled apart into the pieces
the item and adjudication pages show, with nested structure pretty-printed.

Records are hostile text: everything here stays a plain string for the templates to escape.
"""

from __future__ import annotations

import json
from typing import Any

from audit.ingest.records import number
from audit.models import Flag, Transcript


def pretty(value: Any) -> str:
    """JSON for people: indented, unicode kept. The template escapes it."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _obj(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


SCORE_KEYS = (
    "evidence_score",
    "counterfactual_score",
    "deliberation_score",
    "constitutional_score",
    "faithfulness_score",
    "reasoning_quality",
    "deception_risk",
)
DEBATE_SCORES = (
    "advocate_strength",
    "prosecutor_strength",
    "decision_confidence",
    "debate_quality",
)


def present_record(raw: str) -> dict[str, Any]:
    """The parts of a record the item page shows, with structure made readable."""
    try:
        record = json.loads(raw)
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    proposal, decision = _obj(record, "proposal"), _obj(record, "decision")
    cot, debate, context = (
        _obj(record, "cot_analysis"),
        _obj(record, "debate_result"),
        _obj(record, "context"),
    )
    services = context.get("available_services")
    reasons = cot.get("suspicion_reasons")

    def has(obj: dict[str, Any], key: str) -> bool:
        return obj.get(key) not in (None, {}, [], "")

    return {
        "proposal": {
            "action_type": _scalar(proposal.get("action_type")),
            "target": _scalar(proposal.get("target")),
            "worker_id": _scalar(proposal.get("worker_id")),
            "worker_reasoning": _scalar(proposal.get("worker_reasoning")),
            "parameters": pretty(proposal.get("parameters")) if has(proposal, "parameters") else "",
        },
        "decision": {
            "type": _scalar(decision.get("type")),
            "reason": _scalar(decision.get("reason")),
            "explanation": _scalar(decision.get("explanation")),
            "worker_message": _scalar(decision.get("worker_message")),
            "redirect_action": pretty(decision.get("redirect_action"))
            if has(decision, "redirect_action")
            else "",
        },
        "cot": {
            "present": bool(cot),
            "thinking_text": _scalar(cot.get("thinking_text")),
            "answer_text": _scalar(cot.get("answer_text")),
            "has_thinking": cot.get("has_thinking"),
            "deliberation_depth": _scalar(cot.get("deliberation_depth")),
            "is_suspicious": bool(cot.get("is_suspicious")),
            "suspicion_reasons": [_scalar(r) for r in reasons] if isinstance(reasons, list) else [],
            "scores": [
                (key.replace("_", " "), number(cot.get(key))) for key in SCORE_KEYS if key in cot
            ],
        },
        "debate": {
            "present": bool(debate),
            "final_decision": _scalar(debate.get("final_decision")),
            "final_reasoning": _scalar(debate.get("final_reasoning")),
            "num_rounds": _scalar(debate.get("num_rounds")),
            "scores": [
                (key.replace("_", " "), number(debate.get(key)))
                for key in DEBATE_SCORES
                if key in debate
            ],
        },
        "context": {
            "services": [_scalar(s) for s in services] if isinstance(services, list) else [],
            "incident_status": _scalar(context.get("incident_status")),
            "track_record": pretty(context.get("worker_track_record"))
            if has(context, "worker_track_record")
            else "",
        },
        "ground_truth": [(k, _json_literal(v)) for k, v in _obj(record, "ground_truth").items()],
        "labels": [(k, _json_literal(v)) for k, v in _obj(record, "labels").items()],
        "reward": _scalar(record.get("reward")),
        "timestamp": record.get("timestamp"),
    }


def _json_literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def problems(transcript: Transcript) -> list[dict[str, str]]:
    """Each flag with its reason in words, as the importer wrote it."""
    labels = dict(Flag.choices)
    found = transcript.problems if isinstance(transcript.problems, list) else []
    return [
        {
            "flag": str(p.get("flag", "")),
            "label": labels.get(str(p.get("flag", "")), str(p.get("flag", ""))),
            "detail": str(p.get("detail", "")),
        }
        for p in found
        if isinstance(p, dict)
    ]


def flags(transcript: Transcript) -> list[Flag]:
    """The item's flags as choices (value and label) for the pills."""
    return [Flag(value) for value in transcript.flags]
