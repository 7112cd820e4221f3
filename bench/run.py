"""`python -m bench.run`: benchmark authsvc and write bench/results/results.{json,md,png}.

See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from bench import chart, options, report
from bench.suite import Bench
from bench.targets import FAIL, evaluate


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench, write the reports, print the tables; with --check, exit 1 on a FAIL."""
    opts = options.parse(argv)
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    say(f"authsvc bench ({'quick' if opts.quick else 'full'} run); results go to {opts.out_dir}")
    results = Bench(opts, say).run()
    targets = evaluate(results, opts.scale_workers)
    json_path, md_path = report.write(results, targets, opts.out_dir)
    skipped = chart.write(results, opts.out_dir / "results.png")
    if skipped:
        results.notes.append(skipped)
        say(skipped)
        report.write(results, targets, opts.out_dir)
    say(f"wrote {json_path}, {md_path}" + ("" if skipped else f", {opts.out_dir / 'results.png'}"))
    print()
    print(report.runs_table(results))
    print()
    print(report.targets_table(targets))
    print()
    print("\n".join(report.extras_lines(results)))
    for note in results.notes:
        print(f"note: {note}")
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 1 if opts.check and any(t.status == FAIL for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
