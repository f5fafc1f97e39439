"""Fault injection: the real worker and bridge processes under real faults, then proof they converged.

For each fault it starts its own Redis (append-only file on) and PostgreSQL, loads listings,
starts ``finally-indexer bridge`` and ``finally-indexer worker`` as processes (edge store on disk;
the offline embedder, or the OpenAI embedder against the fake embeddings server for the
``embedding-*`` faults), LPUSHes a sync of every listing as the scraper would, injects the fault
once a fifth of the listings are done, and waits for every job to end. Then it proves the outcome:
an audit of PostgreSQL against the collection (drift per class), jobs not ended, entries pending
in either group, bad payloads recorded against those sent, dead letters and their growth after
convergence, the worker's peak memory and its exits nobody asked for. The machinery is shared
with the tests (``tests/faultlab/``, which ``tests/faults/`` runs at a small scale).

Run: ``python bench/faults.py`` (every fault, production sizes: about half an hour, PostgreSQL
stopped for 6 minutes among them) or ``python bench/faults.py --faults sigkill --kills 20
--listings 30000``. ``store-disk-full`` mounts a tmpfs: it needs root (else its row says so).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fakes and faultlab

from faultlab.catalog import FAULTS, run
from faultlab.disk import can_mount
from faultlab.lab import Outcome, Scale

from finally_indexer.core.logging import configure_logging

_COLUMNS = (
    f"{'fault':<20}{'converged':>10}{'after fault':>13}{'drift':>7}{'unfinished':>12}{'pending':>9}"
    f"{'bad sent':>10}{'recorded':>10}{'dead letters':>14}{'DL growth':>11}{'peak RSS':>10}{'exits':>7}"
)


def _row(name: str, out: Outcome) -> str:
    drift = sum(out.drift.values())
    line = (
        f"{name:<20}{'yes' if out.converged else 'NO':>10}{out.seconds:>12.1f}s{drift:>7}"
        f"{out.unfinished_jobs:>12}{out.pending_entries:>9}{out.bad_sent:>10}{out.bad_recorded:>10}"
        f"{out.dead_letters:>14}{out.dead_letter_growth:>11}{out.peak_rss_bytes / 2**20:>7.0f}MiB"
        f"{len(out.exits):>7}   {out.note}"
    )
    return line + (f"   PROBLEMS: {'; '.join(out.problems)}" if out.problems else "")


async def main(names: list[str], scale: Scale, *, keep_failed: bool = False) -> int:
    configure_logging("WARNING", "console")
    print(_COLUMNS, flush=True)
    failed = 0
    for name in names:
        if FAULTS[name].store_disk and not can_mount():
            print(f"{name:<20}{'skipped':>10}   mounting a tmpfs needs root", flush=True)
            continue
        folder = Path(tempfile.mkdtemp(prefix="bench-faults-", dir="."))
        out = None
        try:
            out = await run(name, scale, folder)
        finally:
            if out is None or out.converged or not keep_failed:
                shutil.rmtree(folder, ignore_errors=True)
        failed += not out.converged
        print(_row(name, out), flush=True)
        if not out.converged:  # the evidence goes with the folder: print what the worker said last
            print(f"--- {name}: the worker's last log lines ---\n{out.log_tail}", flush=True)
            if keep_failed:
                print(f"--- {name}: its logs are kept in {folder}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    defaults = Scale()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--listings", type=int, default=defaults.listings)
    parser.add_argument("--kills", type=int, default=defaults.kills, help="SIGKILLs of the sigkill fault")
    parser.add_argument("--bad-payloads", type=int, default=defaults.bad_payloads)
    parser.add_argument(
        "--long-stop", type=float, default=defaults.postgres_long_stop_s,
        help="seconds PostgreSQL stays down in postgres-stop-long",
    )  # fmt: skip
    parser.add_argument(
        "--keep-failed", action="store_true",
        help="keep the folder (servers' data, every role's log) of a run that did not converge",
    )  # fmt: skip
    args = parser.parse_args()
    unknown = set(args.faults.split(",")) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    chosen = Scale(
        listings=args.listings, kills=args.kills, bad_payloads=args.bad_payloads,
        postgres_long_stop_s=args.long_stop,
    )  # fmt: skip
    sys.exit(asyncio.run(main(args.faults.split(","), chosen, keep_failed=args.keep_failed)))
