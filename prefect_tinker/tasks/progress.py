"""Training observability: a progress artifact kept current, and checkpoint events.

The artifact is updated from a background thread that always posts the newest value, so a
slow API call never holds up the training loop (which keeps requests in flight).
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.events import emit_event

CHECKPOINT_SAVED = "tinker.checkpoint.saved"


class ProgressReporter:
    """A Prefect progress artifact (0-100 %) for a loop of `total` steps.

    Example:
        ```python
        with ProgressReporter(total=100, key="sft-my-run") as progress:
            for step in range(100):
                progress.update(step + 1, "loss 1.23")
        ```
    """

    def __init__(self, total: int, key: str | None = None, description: str = "") -> None:
        self.total = max(total, 1)
        self._artifact_id = create_progress_artifact(
            progress=0.0, key=key, description=description or None
        )
        self._pending: tuple[float, str | None] | None = None
        self._wake = threading.Condition()
        self._closed = False
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._post_loop,), name="tinker-progress", daemon=True
        )
        self._thread.start()

    def update(self, step: int, description: str | None = None) -> None:
        """Record that `step` of `total` steps are done; posted without blocking."""
        with self._wake:
            self._pending = (min(100.0, 100.0 * step / self.total), description)
            self._wake.notify()

    def close(self) -> None:
        """Post the last value and stop the background thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post_loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                pending, self._pending = self._pending, None
                closed = self._closed
            if pending is not None:
                progress, description = pending
                update_progress_artifact(self._artifact_id, progress, description=description)
            if closed and pending is None:
                return


def emit_checkpoint_saved(
    tinker_path: str, step: int, loss: float | None, run_key: str, **extra: Any
) -> None:
    """Emit `tinker.checkpoint.saved` so automations can react to a new checkpoint."""
    emit_event(
        event=CHECKPOINT_SAVED,
        resource={
            "prefect.resource.id": f"tinker.checkpoint.{tinker_path}",
            "prefect.resource.name": tinker_path.rsplit("/", 1)[-1],
            "tinker.run-key": run_key,
        },
        payload={"path": tinker_path, "step": step, "loss": loss, "run_key": run_key, **extra},
    )
