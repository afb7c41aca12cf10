"""Push an adapter directory to the Hugging Face Hub with a generated model card.

Each checkpoint becomes one commit on `main` plus a tag named after it, so every checkpoint
stays reachable as a revision. The card's metadata records the tinker path: pushing the same
checkpoint again is a no-op, and a repo that holds another training run's checkpoints is
refused unless `force=True`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from prefect_tinker import __version__
from prefect_tinker.errors import ConfigurationError, HubError
from prefect_tinker.export.adapters import validate_adapter
from prefect_tinker.export.card import ModelCard
from prefect_tinker.export.manifest import MANIFEST_NAME, Manifest
from prefect_tinker.paths import TinkerPath

README = "README.md"
_REVISION_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class HubPushResult:
    """Where the adapter went: repo, revision (tag), commit, and whether anything was pushed."""

    repo_id: str
    revision: str
    commit_oid: str | None
    url: str
    pushed: bool


def push_to_hub(
    adapter_dir: Path | str,
    repo_id: str,
    *,
    token: SecretStr,
    endpoint: str | None = None,
    card: ModelCard | None = None,
    revision: str | None = None,
    force: bool = False,
    private: bool = True,
) -> HubPushResult:
    """Upload the adapter in `adapter_dir` and its model card to `repo_id`.

    Args:
        adapter_dir: a validated PEFT adapter directory (e.g. from `download`).
        repo_id: `user/name` on the Hub; created (private by default) when missing.
        token: a Hub token with write access. It is never logged or put in an error.
        endpoint: Hub URL (default: huggingface.co, or HF_ENDPOINT).
        card: what the card says; default: built from the directory's `manifest.json`.
        revision: tag for this checkpoint (default: the checkpoint's name, e.g. `step-100`).
        force: push even when the repo holds another training run, or the tag another
            checkpoint.

    Raises:
        AdapterValidationError: the directory is not a loadable adapter.
        HubError: the repo belongs to another training run (without `force`), or the Hub
            refused a request.

    Example:
        >>> push_to_hub("./adapter", "me/my-adapter", token=SecretStr("hf_..."))
        HubPushResult(repo_id='me/my-adapter', revision='final', ..., pushed=True)
    """
    adapter_dir = Path(adapter_dir)
    info = validate_adapter(adapter_dir).info
    manifest = Manifest.read(adapter_dir)
    if card is None:
        if manifest is None:
            raise ConfigurationError(
                f"{str(adapter_dir)!r} has no {MANIFEST_NAME} recording its tinker path; pass "
                "card=ModelCard(tinker_path=...)."
            )
        card = ModelCard(tinker_path=manifest.tinker_path)
    path = TinkerPath.parse(card.tinker_path)
    revision = revision or _revision_name(path.name)
    if not _REVISION_OK.match(revision):
        raise ConfigurationError(
            f"revision {revision!r} is not a valid tag name; use letters, digits, '.', '_', '-'."
        )
    secret = token.get_secret_value()
    if not secret:
        raise ConfigurationError("the Hugging Face token is empty; set HuggingFaceCredentials.")

    with _hub_errors(repo_id, secret):
        from huggingface_hub import CommitOperationAdd, HfApi, constants

        if constants.HF_HUB_OFFLINE:
            raise HubError("HF_HUB_OFFLINE is set, so nothing can be pushed; unset it to push.")
        api = HfApi(
            endpoint=endpoint,
            token=secret,
            library_name="prefect-tinker",
            library_version=__version__,
        )
        repo_url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id).tags}
        if revision in tags:
            held = _card_tinker_path(api, repo_id, revision)
            if held == str(path):
                return HubPushResult(repo_id, revision, tags[revision], repo_url, pushed=False)
            if not force:
                raise HubError(
                    f"{repo_id} already has tag {revision!r} for checkpoint {held!r}, not "
                    f"{str(path)!r}; pass another revision, or force=True to move the tag."
                )
        held = _card_tinker_path(api, repo_id, None)
        if held and not force and _run_of(held) != path.run_id:
            raise HubError(
                f"{repo_id} holds checkpoints of another training run ({held!r}); push "
                f"{str(path)!r} to another repo, or pass force=True (--force) to push anyway."
            )
        readme = card.render(info, manifest).encode()
        operations = [CommitOperationAdd(README, readme)] + [
            CommitOperationAdd(str(p.relative_to(adapter_dir)), str(p))
            for p in sorted(adapter_dir.rglob("*"))
            if p.is_file() and p.name not in {README, MANIFEST_NAME}
        ]
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=f"Tinker checkpoint {path}",
            commit_description=f"Exported by prefect-tinker from `{path}`.",
        )
        oid = getattr(commit, "oid", None)
        api.create_tag(repo_id, tag=revision, revision=oid, exist_ok=force)
    return HubPushResult(repo_id, revision, oid, repo_url, pushed=True)


def _revision_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-_") or "checkpoint"
    return cleaned[:100]


def _run_of(tinker_path: str) -> str | None:
    try:
        return TinkerPath.parse(tinker_path).run_id
    except Exception:  # noqa: BLE001 - a card with a garbled path belongs to no known run
        return None


def _card_tinker_path(api: Any, repo_id: str, revision: str | None) -> str | None:
    """The `tinker_path` in the card metadata at `revision`, or None (no card, empty repo)."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = api.model_info(repo_id, revision=revision)
    except HfHubHTTPError as exc:
        if getattr(exc.response, "status_code", None) == 404:
            return None
        raise
    data = getattr(info, "card_data", None)
    value = data.get("tinker_path") if data is not None else None
    return str(value) if value else None


class _hub_errors:  # noqa: N801 - used as a context manager, reads like one
    """Turn Hub client failures into a `HubError` whose text never contains the token."""

    def __init__(self, repo_id: str, secret: str) -> None:
        self.repo_id = repo_id
        self.secret = secret

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, HubError | ConfigurationError):
            if isinstance(exc, HubError | ConfigurationError) and self.secret in str(exc):
                raise type(exc)(str(exc).replace(self.secret, "***")) from None
            return False
        if not isinstance(exc, Exception):
            return False
        status = getattr(getattr(exc, "response", None), "status_code", None)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = first.replace(self.secret, "***")
        what = f"HTTP {status}" if status else type(exc).__name__
        hint = " Check that the token has write access." if status in (401, 403) else ""
        raise HubError(
            f"the Hub refused the push to {self.repo_id} ({what}: {detail}).{hint}"
        ) from None


__all__ = ["HubPushResult", "ModelCard", "push_to_hub"]
