"""`manage.py bench`: the pipeline measured against references taken in the same run (issue 7).

scenarios.py holds the scenarios, procs.py the child processes (fake model server, qcluster,
gunicorn) and the memory sampler, reference.py the raw SDK loop, load.py the page load
generator, ingest_child.py the process that ingests the large CSV, report.py the table."""
