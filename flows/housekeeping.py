"""Deployable entrypoint: checkpoint housekeeping (extend TTLs of kept checkpoints, delete
superseded ones, dry run by default).

Serve it from this machine with `python flows/housekeeping.py`.
"""

from prefect_tinker.flows.housekeeping import checkpoint_housekeeping

__all__ = ["checkpoint_housekeeping"]

if __name__ == "__main__":
    checkpoint_housekeeping.serve(name="tinker-housekeeping", cron="30 3 * * *")
