"""Deployable entrypoint: the SFT pipeline (train → checkpoint → evaluate → export).

Deploy with `prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml`, or serve
it from this machine with `python flows/sft.py`.
"""

from prefect_tinker.flows.sft import sft_pipeline

__all__ = ["sft_pipeline"]

if __name__ == "__main__":
    sft_pipeline.serve(name="tinker-sft")
