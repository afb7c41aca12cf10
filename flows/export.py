"""Deployable entrypoint: export a Tinker checkpoint (download, validate, publish, Hub push).

Triggered from the Prefect UI with a checkpoint path. Serve it with `python flows/export.py`.
"""

from prefect_tinker.flows.export import export_checkpoint

__all__ = ["export_checkpoint"]

if __name__ == "__main__":
    export_checkpoint.serve(name="tinker-export")
