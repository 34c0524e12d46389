"""``audit``: the questions of an audit, and a person's answers recorded and counted (docs/cli.md)."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def cmd_audit(args) -> int:
    from ..analysis.noise_rate import noise_count
    from ..run.audit import audit_questions, record_answers, write_questions
    from ..run.decisions import DecisionLog
    from ..run.store import RunStore

    if (args.out is None) == (args.answers is None):
        raise DataError("audit: give --out FILE (write the questions) or --answers FILE (record the answers)")
    if args.size < 1:
        raise DataError(f"audit: --size must be at least 1, got {args.size}")
    store = RunStore(args.run, read_only=args.answers is None)
    if args.out is not None:
        out = Path(args.out)
        if out.resolve().is_relative_to(store.path.resolve()):
            raise DataError(f"audit: write the questions outside the run folder {store.path}")
        table = audit_questions(store, args.size, seed=args.seed)
        write_questions(table, out)
        print(f"wrote {len(table)} questions to {out.resolve()}: fill the answer column with right, wrong or the "
              f"true class name, then run: csl-clean audit {args.run} --answers {out}")
        return 0
    recorded = record_answers(args.answers, store)
    scores = store.scores()
    effective = DecisionLog(store.path, read_only=True).effective(len(scores), scores["label"].to_numpy())
    count = noise_count(scores, effective["action"].to_numpy(object), effective["source"].to_numpy(object))
    print(f"recorded {recorded} answers (undo them on the dashboard's Focused review page)")
    print(f"wrong      {count.text()}")
    return 0
