"""Prefect tasks for Tinker: each named, one remote job, retried only on transient faults.

Example:
    ```python
    from prefect import flow
    from prefect_tinker import TinkerCredentials
    from prefect_tinker.tasks import list_checkpoints, set_checkpoint_ttl

    @flow
    def keep_forever(run_id: str):
        creds = TinkerCredentials.load("BLOCK_NAME")
        for cp in list_checkpoints(creds, run_id):
            set_checkpoint_ttl(creds, cp.tinker_path, None)
    ```
"""

from prefect_tinker.tasks.checkpoints import (
    apply_housekeeping,
    delete_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    list_training_runs,
    publish_checkpoint,
    set_checkpoint_ttl,
    unpublish_checkpoint,
)
from prefect_tinker.tasks.evaluation import evaluate
from prefect_tinker.tasks.export import (
    download_checkpoint,
    merge_adapter_dir,
    push_adapter_to_hub,
    validate_adapter_dir,
)
from prefect_tinker.tasks.results import (
    CheckpointInfo,
    ModelCapability,
    Sample,
    TrainingRunInfo,
    TrainSummary,
)
from prefect_tinker.tasks.sampling import sample
from prefect_tinker.tasks.training import (
    create_training_run,
    get_server_capabilities,
    save_state,
    save_weights_external,
    save_weights_for_sampler,
    train,
)

__all__ = [
    "CheckpointInfo",
    "ModelCapability",
    "Sample",
    "TrainSummary",
    "TrainingRunInfo",
    "apply_housekeeping",
    "create_training_run",
    "delete_checkpoint",
    "download_checkpoint",
    "evaluate",
    "get_server_capabilities",
    "latest_checkpoint",
    "list_checkpoints",
    "list_training_runs",
    "merge_adapter_dir",
    "publish_checkpoint",
    "push_adapter_to_hub",
    "sample",
    "save_state",
    "save_weights_external",
    "save_weights_for_sampler",
    "set_checkpoint_ttl",
    "train",
    "unpublish_checkpoint",
    "validate_adapter_dir",
]
