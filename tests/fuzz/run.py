"""``python -m tests.fuzz.run [--cases N] [--seed S] [--targets a,b] [--workers W]``: the long
fuzz run behind ``make fuzz``. Prints, per loader, how many mutated files gave a clean
convkit error, loaded, were rejected by a third-party reader first, raised anything else,
ran over time or killed the child, and the worst traced memory peak against the file's size.
Exits 1 if any case raised another exception, hung, crashed or went over the memory bound.
"""
import argparse
import sys
import time

from .harness import OUTCOMES, TARGETS, format_report, over_memory, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000, help="files per loader")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", help=f"comma-separated, from {', '.join(TARGETS)}")
    parser.add_argument("--workers", type=int, default=2, help="children at a time")
    parser.add_argument("--batch", type=int, default=500, help="cases per child")
    args = parser.parse_args(argv)
    names = args.targets.split(",") if args.targets else None
    start = time.perf_counter()
    report = run(names, cases=args.cases, seed=args.seed, batch=args.batch,
                 workers=args.workers)
    print(format_report(report))
    total = sum(sum(entry["counts"].values()) for entry in report.values())
    print(f"{total} cases in {time.perf_counter() - start:.0f} s")
    bad = sum(entry["counts"].get(o, 0) for entry in report.values()
              for o in OUTCOMES[3:]) + sum(over_memory(r) for entry in report.values()
                                           for r in entry["records"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
