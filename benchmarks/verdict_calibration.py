"""Verdict calibration: how often each verdict comes out when the truth is known (gstbench.reports.calibration).

Drives every claim kind (correlation with Pearson and Kendall, paired and Welch differences,
order, trend, equivalence, non-inferiority, bound; one part and several) through the real
claim pipeline (parse_claims -> evaluate_claims) on planted data at true effects of 0, half
the tested effect, the tested effect, twice it and its opposite (an equivalence: multiples
of its margin), and prints the share of each verdict, the claim's stated power, and
whether each goal of docs/definitions.md#calibration is met. Exit status 1 when one is not.

    python benchmarks/verdict_calibration.py [--simulations 2000] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gstbench.reports.calibration import TRUTHS, calibrate, designs
from gstbench.reports.claim_stats import NOT_RUN, VERDICTS

import tiny

SHORT = {"reproduced": "repr", "weaker": "weak", "inconclusive": "inc", "absent": "abs", "contradicted": "contra"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000, help="planted data sets per design and truth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the frequencies as JSON")
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.simulations = 20
    started = time.time()
    results = [calibrate(d, args.simulations, args.seed) for d in designs()]
    if args.json:
        print(json.dumps([{"design": r.design, "parts": r.parts, "power": r.power,
                           "frequencies": {str(k): v for k, v in r.frequencies.items()},
                           "goals": r.goals()} for r in results], indent=1))
        return 0 if all(all(r.goals().values()) for r in results) else 1
    print(f"{args.simulations} planted data sets per design and truth, seed {args.seed}; shares of each verdict "
          f"(repr reproduced, weak weaker than the paper's effect, inc inconclusive, abs no effect of the tested "
          f"size, contra contradicted)")
    print()
    print("| design | parts | stated power | truth | " + " | ".join(SHORT[v] for v in VERDICTS) + " | goals |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in VERDICTS) + " | --- |")
    failed = []
    for r in results:
        goals = r.goals()
        missed = [g for g, ok in goals.items() if not ok]
        failed += [f"{r.design}: {g}" for g in missed]
        for i, k in enumerate(TRUTHS):
            f = r.frequencies[k]
            scale = "margin" if r.tested == 0.0 else "tested"
            truth = "0" if k == 0 else f"{k:g} x {scale}"
            head = [r.design, str(r.parts), "-" if r.power is None else f"{r.power:.3f}"] if i == 0 else ["", "", ""]
            tail = ("all met" if not missed else "MISSED: " + "; ".join(missed)) if i == 0 else ""
            print("| " + " | ".join([*head, truth, *(f"{f[v]:.3f}" for v in VERDICTS), tail]) + " |")
        if r.frequencies[TRUTHS[0]].get(NOT_RUN):
            failed.append(f"{r.design}: a planted claim read 'not run'")
    print()
    print(f"{len(results)} designs, {sum(all(r.goals().values()) for r in results)} with every goal met; "
          f"{time.time() - started:.0f} s")
    for line in failed:
        print(f"goal missed: {line}")
    if args.tiny:
        print("--tiny: 20 data sets per cell, too few to judge the goals")
        return 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
