"""bench.serve's /metrics (Prometheus' text format, through prometheus_client) and what
bench.load reads back from it: the batch sizes the server formed during a level, and the
compiles it made after start-up (none, where the engine runs a shape the warm-up did not
make uncompiled: bench_uncompiled_decodes_after_startup counts those).

Each app has a registry of its own (not prometheus_client's global one), so two servers in one
process (the tests) count apart.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_SIZE = "bench_batch_size"
COMPILES = "bench_compiles_after_startup"
GRAPH_CAPTURES = "bench_graph_captures_after_startup"
UNCOMPILED = "bench_uncompiled_decodes_after_startup"


class ServerMetrics:
    def __init__(self, batch_size: int, pending: Callable[[], int], compiles: Callable[[], int],
                 graph_captures: Callable[[], int], uncompiled: Callable[[], int]):  # fmt: skip
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("bench_requests", "Transcription requests answered, by HTTP status", ["status"],
                                registry=registry)  # fmt: skip
        self.queue_depth = Gauge("bench_queue_depth", "Requests accepted and not yet answered", registry=registry)
        self.queue_depth.set_function(pending)
        # one bucket per size the batcher can form, so the distribution reads back exactly
        self.batch_size = Histogram(BATCH_SIZE, "Clips per batch the engine ran (a failed batch's retries: 1 each)",
                                    buckets=tuple(range(1, batch_size + 1)), registry=registry)  # fmt: skip
        self.latency = Histogram("bench_request_latency_seconds", "From a request's arrival to its whole answer",
                                 buckets=LATENCY_BUCKETS, registry=registry)  # fmt: skip
        self.audio = Counter("bench_audio_seconds", "Audio seconds transcribed", registry=registry)
        self.compiles = Gauge(COMPILES, "Graphs torch.compile made after the warm-up (a request paid for each)",
                              registry=registry)  # fmt: skip
        self.compiles.set_function(compiles)
        self.graph_captures = Gauge(GRAPH_CAPTURES, "CUDA graphs captured after the warm-up", registry=registry)
        self.graph_captures.set_function(graph_captures)
        self.uncompiled = Gauge(UNCOMPILED, "Decodes run uncompiled after the warm-up, at a shape it did not make "
                                "(a clip of a chunk count it did not meet): slower, but no request waits for a "
                                "compile", registry=registry)  # fmt: skip
        self.uncompiled.set_function(uncompiled)

    def text(self) -> bytes:
        return generate_latest(self.registry)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def batch_sizes(before: dict, after: dict) -> dict[int, int] | None:
    """How many batches of each size the server ran between two scrapes (None: it does not
    export bench_batch_size, as a server other than bench.serve)."""
    cumulative = {}
    for (name, labels), value in after.items():
        le = dict(labels).get("le")
        if name == f"{BATCH_SIZE}_bucket" and le != "+Inf":
            cumulative[int(float(le))] = value - before.get((name, labels), 0.0)
    if not cumulative:
        return None
    sizes, counts, below = sorted(cumulative), {}, 0.0
    for size in sizes:
        counts[size] = int(round(cumulative[size] - below))
        below = cumulative[size]
    return {size: n for size, n in counts.items() if n}


def gauge(scrape: dict, name: str) -> float | None:
    value = scrape.get((name, ()))
    return None if value is None else float(value)
