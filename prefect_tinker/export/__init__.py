"""Export: download checkpoints, inspect and validate adapters, push to the Hugging Face Hub.

Everything here is plain Python, usable without Prefect; `merge` needs the `merge` extra.
"""

from prefect_tinker.export.download import ProgressUpdate, download
from prefect_tinker.export.manifest import MANIFEST_NAME, FileEntry, Manifest

__all__ = ["MANIFEST_NAME", "FileEntry", "Manifest", "ProgressUpdate", "download"]
