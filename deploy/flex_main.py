"""Dataflow Flex Template entry point.

The template launcher runs ``python deploy/flex_main.py --name=value ...``
with the template's parameters; ``--command`` (run or stream, default run)
picks the regenwatch command, every other flag goes to it unchanged, and the
launcher adds the Dataflow options (--runner, --project, --region,
--temp_location, --setup_file from FLEX_TEMPLATE_PYTHON_SETUP_FILE...).
"""
import sys
from typing import List, Tuple

COMMANDS = ("run", "stream")


def split_command(argv: List[str]) -> Tuple[str, List[str]]:
    command, rest = "run", []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--command="):
            command = arg.split("=", 1)[1]
        elif arg == "--command":
            command = next(args, "")
        else:
            rest.append(arg)
    if command not in COMMANDS:
        raise SystemExit(f"--command must be one of {', '.join(COMMANDS)}, got {command!r}")
    return command, rest


if __name__ == "__main__":
    from regenwatch.cli import main

    name, args = split_command(sys.argv[1:])
    sys.exit(main([name, *args]))
