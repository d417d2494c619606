"""Benchmark the pipeline: a real qcluster and the fake model server on this database."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from batches.bench.report import table, write_json
from batches.bench.scenarios import ALL_SCENARIOS, Bench, Options, run

QUICK_SCALE = 0.02


class Command(BaseCommand):
    help = ("Run the throughput, latency, rate-limit, ingest, memory and page-load scenarios "
            "against a local fake model server and print one table. Uses DATABASE_URL; creates "
            "a 'bench' user and deletes its batches when done.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scenarios", default=",".join(map(str, ALL_SCENARIOS)),
                            help="Comma-separated scenario numbers (default: all).")
        parser.add_argument("--quick", action="store_true",
                            help=f"Scale every row count by {QUICK_SCALE} and load for 2 s "
                                 "(a smoke run; the figures mean little).")
        parser.add_argument("--rows-scale", type=float, default=None,
                            help="Multiply every row count by this.")
        parser.add_argument("--workers", type=int, default=settings.Q_CLUSTER["workers"],
                            help="qcluster worker processes (default: Q_WORKERS).")
        parser.add_argument("--concurrency", type=int, default=50,
                            help="Concurrency of the overhead scenario (pipeline and reference).")
        parser.add_argument("--slice-inflight", type=int, default=None,
                            help="BATCH_SLICE_MAX_INFLIGHT for the cluster: with concurrency / "
                                 "workers, one batch runs in every worker process.")
        parser.add_argument("--load-seconds", type=float, default=None,
                            help="Duration of the page load (default 10 s, 2 s with --quick).")
        parser.add_argument("--repeat", type=int, default=None,
                            help="Runs of each timed scenario; the table shows the median and "
                                 "the range (default 3, 1 with --quick).")
        parser.add_argument("--million-rows", type=int, default=1_000_000,
                            help="Rows of scenario 8's batch before --rows-scale (default "
                                 "1,000,000).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            scenarios = tuple(sorted({int(s) for s in options["scenarios"].split(",") if s}))
        except ValueError:
            raise CommandError("--scenarios takes numbers, e.g. 1,2,4") from None
        if not scenarios or not set(scenarios) <= set(ALL_SCENARIOS):
            raise CommandError(f"Scenarios are {', '.join(map(str, ALL_SCENARIOS))}.")
        if MigrationExecutor(connection).migration_plan(
            MigrationExecutor(connection).loader.graph.leaf_nodes()
        ):
            raise CommandError("The database has unapplied migrations: run manage.py migrate.")
        quick = options["quick"]
        scale = options["rows_scale"] or (QUICK_SCALE if quick else 1.0)
        load_seconds = options["load_seconds"] or (2.0 if quick else 10.0)
        repeat = options["repeat"] or (1 if quick else 3)
        if repeat < 1:
            raise CommandError("--repeat must be at least 1.")
        bench = Bench(Options(
            scenarios=scenarios, workers=options["workers"], scale=scale,
            concurrency=options["concurrency"], load_seconds=load_seconds,
            slice_inflight=options["slice_inflight"], repeat=repeat,
            million_rows=options["million_rows"],
            log=lambda message: (self.stderr.write(message), self.stderr.flush()),
        ))
        logging.getLogger("django-q").setLevel(logging.WARNING)  # one line per enqueued slice
        # Slices are enqueued once per worker of the cluster the bench starts.
        configured_workers = settings.Q_CLUSTER["workers"]
        settings.Q_CLUSTER["workers"] = options["workers"]
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            rows = run(bench)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            raise CommandError("Interrupted; the servers, the cluster and the bench batches "
                               "were cleaned up.") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            settings.Q_CLUSTER["workers"] = configured_workers
        load = os.getloadavg()
        context = (
            f"{connection.vendor}, {os.cpu_count()} cores, load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {options['workers']} workers, "
            f"median of {repeat}" + (f", rows x {scale:g}" if scale != 1 else "")
            + (f", BATCH_SLICE_MAX_INFLIGHT={options['slice_inflight']}"
               if options["slice_inflight"] else "")
        )
        self.stdout.write(table(rows))
        self.stdout.write("\n" + context)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = write_json(rows, Path(settings.BASE_DIR) / "test-artifacts" /
                          f"bench-{connection.vendor}-{stamp}-{os.getpid()}.json", context=context,
                          database=connection.vendor, load_average=list(load),
                          cores=os.cpu_count(), repeat=repeat, scale=scale)
        self.stderr.write(f"table written to {path}")


def _interrupt(signum: int, frame: Any) -> None:
    # Unwinds like Ctrl-C, so the cluster, the servers and the bench batches are cleaned up.
    raise KeyboardInterrupt
