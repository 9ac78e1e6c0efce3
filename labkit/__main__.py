"""Command line: ``python -m labkit doctor | fetch``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="Transfer Learning Lab helper")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="report Python, packages, device, cache and asset status")
    fetch = sub.add_parser("fetch", help="fetch, verify and cache every asset (and convert the LLM)")
    fetch.add_argument("--no-convert", action="store_true", help="skip converting SmolLM2 to fp32")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from labkit.doctor import print_report

        return 0 if print_report() else 1

    from labkit import assets

    try:
        for name, folder in assets.fetch_all(progress=True).items():
            print(f"{name}: ready in {folder}")
        if not args.no_convert:
            from labkit.models import llm_path

            print(f"smollm2 (fp32 copy): ready in {llm_path()}")
    except assets.AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
