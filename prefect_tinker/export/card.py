"""The model card (README.md) of an exported adapter: YAML metadata + a readable summary.

The metadata records the tinker path, so a Hub repo (or anyone) can tell which checkpoint
the files came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prefect_tinker.export.adapters import AdapterInfo
from prefect_tinker.export.manifest import Manifest
from prefect_tinker.paths import TinkerPath

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


@dataclass
class ModelCard:
    """What the generated card says beyond what the adapter files tell.

    Example:
        >>> card = ModelCard("tinker://run:train:0/weights/final", dataset_fingerprint="ab12")
        >>> card.tinker_path
        'tinker://run:train:0/weights/final'
    """

    tinker_path: str
    base_model: str | None = None  # default: the adapter's base_model_name_or_path
    license: str = "apache-2.0"
    training_metrics: dict[str, float] = field(default_factory=dict)
    dataset_fingerprint: str | None = None
    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)

    def metadata(self, info: AdapterInfo) -> dict[str, Any]:
        path = TinkerPath.parse(self.tinker_path)
        meta: dict[str, Any] = {
            "base_model": self.base_model or info.base_model,
            "library_name": "peft",
            "license": self.license,
            "pipeline_tag": "text-generation",
            "tags": sorted({"lora", "peft", "tinker", "prefect-tinker", *self.tags}),
            "tinker_path": str(path),
            "tinker_run_id": path.run_id,
        }
        if self.dataset_fingerprint:
            meta["dataset_fingerprint"] = self.dataset_fingerprint
        return {k: v for k, v in meta.items() if v is not None}

    def render(self, info: AdapterInfo, manifest: Manifest | None = None) -> str:
        """The full README.md text."""
        import yaml

        meta = self.metadata(info)
        base = meta.get("base_model", "unknown")
        lines = [
            "---",
            yaml.safe_dump(meta, sort_keys=True).strip(),
            "---",
            "",
            f"# {self.title or 'LoRA adapter for ' + str(base)}",
            "",
            self.description
            or f"A LoRA adapter for `{base}`, trained with Tinker, exported by prefect-tinker.",
            "",
            "## Checkpoint",
            "",
            "| | |",
            "|---|---|",
            f"| Tinker path | `{meta['tinker_path']}` |",
            f"| Base model | `{base}` |",
            f"| License | {self.license} |",
        ]
        if self.dataset_fingerprint:
            lines.append(f"| Dataset fingerprint | `{self.dataset_fingerprint}` |")
        targets = info.target_modules
        lines += [
            "",
            "## LoRA configuration",
            "",
            "| | |",
            "|---|---|",
            f"| Rank | {info.rank} |",
            f"| Alpha | {info.alpha:g} |" if info.alpha is not None else "| Alpha | - |",
            f"| Target modules | {', '.join(targets) if isinstance(targets, list) else targets} |",
            f"| Parameters | {info.parameter_count:,} |",
            f"| Dtypes | {', '.join(info.dtypes)} |",
        ]
        if info.target_parameters:
            lines.append(f"| Target parameters | {', '.join(info.target_parameters)} |")
        if self.training_metrics:
            lines += ["", "## Training metrics", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.6g} |" for k, v in sorted(self.training_metrics.items())]
        if manifest is not None:
            lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---:|---|"]
            lines += [f"| {f.path} | {f.size:,} | `{f.sha256}` |" for f in manifest.files]
        lines += [
            "",
            "## Usage",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            'model = PeftModel.from_pretrained(base, "<this repo or directory>")',
            "```",
            "",
        ]
        return "\n".join(lines)


def card_metadata(text: str) -> dict[str, Any]:
    """The YAML metadata at the top of a README.md, or {} when it has none."""
    import yaml

    match = _FRONT_MATTER.match(text)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match[1])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["ModelCard", "card_metadata"]
