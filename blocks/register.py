"""Register prefect-tinker's block types and create block documents.

Usage (against the Prefect API in PREFECT_API_URL, or an ephemeral one):

    python blocks/register.py                 # register the block types only
    python blocks/register.py --local local   # + TinkerCredentials(base_url="local") named "local"
    python blocks/register.py --from-env prod # + blocks from TINKER_API_KEY, TINKER_BASE_URL,
                                              #   TINKER_PROJECT_ID, HF_TOKEN, HF_ENDPOINT
"""

from __future__ import annotations

import argparse

from prefect_tinker.cli.pipeline import create_from_env, create_local, register_blocks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", metavar="NAME", help="save blocks for the local service")
    parser.add_argument("--from-env", metavar="NAME", help="save blocks from the environment")
    args = parser.parse_args(argv)
    register_blocks()
    if args.local:
        create_local(args.local)
    if args.from_env:
        create_from_env(args.from_env)


if __name__ == "__main__":
    main()
