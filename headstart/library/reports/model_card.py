"""The model card: a Markdown page rendered from what the run recorded (pure: no IO)."""

from __future__ import annotations

from headstart.ground.markdown_text import plain
from headstart.library.evaluation.gate import Decision
from headstart.library.evaluation.transfer import transfer_markdown


def render_model_card(config: dict, metrics: dict, decision: Decision, version: str | None = None) -> str:
    """Markdown: what the model is, how it scored, what it was trained on, and the gate's decision."""
    lineage = config.get("lineage", {})
    per_class = "\n".join(
        f"| {plain(name)} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for name, m in metrics.get("per_class", {}).items()
    )
    packages = ", ".join(f"{k} {v}" for k, v in lineage.get("packages", {}).items())
    code = f"headstart `{lineage.get('headstart_version')}`, commit `{lineage.get('code_commit')}`"
    return f"""# Model card: {config["backbone"]} ({config["scenario"]}){f" — {version}" if version else ""}

- **Task:** image classification into {len(config["classes"])} classes: {", ".join(map(plain, config["classes"]))}
- **Backbone:** `{config["backbone"]}`, head {config["head"]}, {config["freeze_stages"]} frozen stage(s),
  BatchNorm statistics {config["bn"]}{f", classifier `{config['classifier']}`" if config.get("classifier") else ""}
- **Input:** {config["preprocessing"]["input_size"]} px, mean {config["preprocessing"]["mean"]}, std
  {config["preprocessing"]["std"]}

## Test results
Accuracy **{metrics["accuracy"]:.4f}**, macro-F1 **{metrics["macro_f1"]:.4f}** on {metrics["test_images"]} images.

| class | precision | recall | F1 | support |
| --- | --- | --- | --- | --- |
{per_class}

## What transfer bought
{transfer_markdown(metrics.get("transfer"))}

## Gate
{decision.to_markdown()}

## Lineage
- data md5 `{lineage.get("data_md5")}`, test data md5 `{lineage.get("test_data_md5")}`
- split {lineage.get("split")}
- workspace commit `{lineage.get("workspace_commit")}`, params sha256 `{lineage.get("params_sha256")}`
- code: {code}, fingerprint `{lineage.get("code_sha256")}`
- Prefect flow run `{lineage.get("flow_run_id")}`
- packages: {packages}; lock file sha256 `{lineage.get("lock_sha256")}`
"""


def reproduction_markdown(records: list[dict]) -> str:
    """The model card's reproduction section: each ``headstart reproduce`` outcome recorded beside the version."""
    lines = ["## Reproductions", ""]
    if not records:
        return "\n".join([*lines, "Not reproduced yet (`headstart reproduce VERSION`).", ""])
    lines += ["| when | verdict | compared | accuracy Δ | macro-F1 Δ | environment differences |", "| --- " * 6 + "|"]
    for record in records:
        metrics = record.get("metrics") or {}
        deltas = [(metrics.get(name) or {}).get("delta") for name in ("accuracy", "macro_f1")]
        compared = "bit for bit" if record.get("mode") == "bitwise" else f"within ±{record.get('tolerance')}"
        cells = [str(record.get("at")), str(record.get("verdict")), compared,
                 *("—" if d is None else f"{d:+.4f}" for d in deltas),
                 ", ".join(record.get("why_not_bitwise") or []) or "none"]  # fmt: skip
        lines.append("| " + " | ".join(plain(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"
