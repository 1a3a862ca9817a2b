"""The accuracy targets, checked end to end with fixed seeds (too slow for a unit test):

* the ``make run`` job: the simple MNIST convnet trained on 4,000 bundled MNIST digits must
  reach >= 97% on the 1,000 held-out ones;
* the same job on scikit-learn's 8x8 digits must reach >= 97% on its held-out split.

    python -m benchmarks.accuracy            # both; exit code 1 if a target is missed
    python -m benchmarks.accuracy --only digits
"""
from __future__ import annotations

import argparse
import sys

TARGETS = {"mnist": 0.97, "digits": 0.97}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(TARGETS), default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from convkit.jobs import train_default

    missed = []
    for dataset, target in TARGETS.items():
        if args.only and dataset != args.only:
            continue
        result = train_default(dataset=dataset, seed=args.seed, output=None, verbose=0)
        acc = result["test_accuracy"]
        ok = acc >= target
        print(f"{dataset:<7} test accuracy {acc:.4f} on {result['test_samples']} held-out "
              f"images (target {target:.2f}) {'ok' if ok else 'MISSED'}; "
              f"{result['epochs']} epochs on {result['train_samples']} images in "
              f"{result['train_seconds']:.1f} s")
        if not ok:
            missed.append(dataset)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
