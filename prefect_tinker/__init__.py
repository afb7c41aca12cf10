"""prefect-tinker: Prefect 3 pipelines for Tinker LoRA fine-tuning.

`import prefect_tinker` never imports torch: the local engine loads only when the embedded
service runs.
"""

__version__ = "0.1.0"
