"""The long fuzzing campaign: the properties of tests/fuzz/test_fuzz.py, searched for minutes.

    python -m bench.fuzz_campaign --minutes 25 [--model default] [--json report.json]
    REGENWATCH_FUZZ_EXAMPLES=200000 python -m bench.fuzz_campaign      # or a total example count

Each round runs every property with ``--round-examples`` new examples from a
fresh seed (Hypothesis' generation, shrinking on failure). A failure is
recorded (property, exception, the shrunk example) and the campaign goes on.
It prints, per property, the examples tried and the failures found; the
figures of the campaign of record are in docs/ROBUSTNESS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import InvalidArgument
from hypothesis import strategies as st


def _properties(harness, folder, paths):
    from tests.fuzz import strategies as hs

    def line(line):
        outcome = harness.line(line)
        assert outcome.balanced and outcome.inputs == (1 if line.strip() else 0), outcome

    def good_page(text, page_id, how):
        outcome = harness.line(hs.good_page_line(text, page_id, how))
        assert outcome.decided == 1, outcome.errors

    def mutated(kind):
        original = open(paths[kind], "rb").read()
        target = os.path.join(folder, "mutant-" + kind)

        def check(data):
            with open(target, "wb") as handle:
                handle.write(data.draw(hs.mutated(original)))
            outcome = harness.file(target)
            assert outcome.balanced, outcome
        return check

    props = {
        "json_line": (line, dict(line=hs.json_line())),
        "good_page": (good_page, dict(hs.GOOD_PAGE)),
    }
    for kind in sorted(paths):
        props[f"mutated {kind}"] = (mutated(kind), dict(data=st.data()))

    from tests.fuzz.test_fuzz import GOOD_LINES

    def cut_gzip(cut, members):
        data = hs.gzip_members(GOOD_LINES, members)
        data = data[:int(cut * len(data))]
        target = os.path.join(folder, "cut.jsonl.gz")
        with open(target, "wb") as handle:
            handle.write(data)
        expected = [json.loads(line)["id"] for line in hs.stdlib_gunzip_prefix(data).split(b"\n")[:-1]]
        outcome = harness.jsonl_file(target)
        assert outcome.balanced and outcome.decided_ids[:len(expected)] == expected, outcome

    props["cut_gzip"] = (cut_gzip, dict(cut=st.floats(0, 1), members=st.lists(st.integers(1, 39), max_size=5)))
    return props


def _counted(func, name, tried):
    def counted(**kwargs):
        tried[name] += 1
        return func(**kwargs)
    return counted


def main(argv=None, log=print) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("REGENWATCH_FUZZ_MINUTES", "25")))
    parser.add_argument("--examples", type=int, default=int(os.environ.get("REGENWATCH_FUZZ_EXAMPLES", "0")),
                        help="Stop after this many examples in all (0: run for --minutes).")
    parser.add_argument("--round-examples", type=int, default=300)
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", default=None, help="Write the figures as JSON here.")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    from tests.fuzz import strategies as hs
    from tests.fuzz.harness import Harness

    folder = tempfile.mkdtemp(prefix="regenwatch-fuzz-")
    paths = hs.seed_files(folder)
    harness = Harness(args.model)
    props = _properties(harness, folder, paths)
    rng = random.Random(args.seed)
    tried = Counter()
    failures = defaultdict(list)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    rounds = 0

    def done():
        if args.examples:
            return sum(tried.values()) >= args.examples
        return time.monotonic() >= deadline

    while not done():
        rounds += 1
        for name, (func, strategies) in props.items():
            if done():
                break

            test = settings(max_examples=args.round_examples, deadline=None, database=None,
                            suppress_health_check=list(HealthCheck), print_blob=True)(
                given(**strategies)(_counted(func, name, tried)))
            seed = rng.getrandbits(64)
            try:
                from hypothesis import seed as hseed

                hseed(seed)(test)()
            except InvalidArgument:
                raise  # the campaign's own mistake, not a finding
            except Exception as exc:  # pylint: disable=broad-except
                # A failure of the property: recorded, and the search goes on.
                failures[name].append({"seed": seed, "error": f"{type(exc).__name__}: {exc}"[:2000],
                                       "traceback": traceback.format_exc()[-3000:]})
                log(f"FAILURE in {name} (seed {seed}): {type(exc).__name__}: {str(exc)[:300]}")
        log(f"round {rounds}: {sum(tried.values())} examples, {sum(len(v) for v in failures.values())} "
            f"failures, {time.monotonic() - started:.0f} s")
    report = {
        "minutes": round((time.monotonic() - started) / 60, 1),
        "rounds": rounds,
        "examples": sum(tried.values()),
        "examples_by_property": dict(tried),
        "failures": sum(len(v) for v in failures.values()),
        "failures_by_property": {k: v for k, v in failures.items()},
        "model": args.model,
    }
    log(json.dumps({k: v for k, v in report.items() if k != "failures_by_property"}, indent=1))
    for name, items in failures.items():
        for item in items:
            log(f"--- {name}: {item['error'][:500]}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return report


if __name__ == "__main__":
    sys.exit(1 if main()["failures"] else 0)
