"""A small closed-loop HTTP load generator: N clients, each sending its next request as soon as
the previous answer arrives, on keep-alive connections (stdlib only)."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Target:
    name: str
    path: str
    headers: dict[str, str]


@dataclass
class Latencies:
    ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        if not self.ms:
            return float("nan")
        if len(self.ms) == 1:
            return self.ms[0]
        return statistics.quantiles(self.ms, n=100, method="inclusive")[round(p) - 1]


def run_load(port: int, targets: list[Target], *, clients: int, seconds: float
             ) -> dict[str, Latencies]:
    """Each client cycles through the targets for `seconds`; latencies per target name."""
    results = {t.name: Latencies() for t in targets}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = offset
        while time.monotonic() < end:
            target = targets[i % len(targets)]
            i += 1
            started = time.perf_counter()
            try:
                conn.request("GET", target.path, headers=target.headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            ms = (time.perf_counter() - started) * 1000
            with lock:
                entry = results[target.name]
                entry.statuses[status] = entry.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    entry.ms.append(ms)
                else:
                    entry.errors += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
