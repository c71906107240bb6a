from stream_server.engine.telemetry import Histogram, LatencyStats


def test_histogram_buckets_are_cumulative_and_end_with_the_count():
    histogram = Histogram(bounds=(1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(1.0, 2), (2.0, 3), (float("inf"), 4)]
    assert (histogram.count, histogram.total) == (4, 10.0)


def test_latency_stats_count_each_committed_word():
    stats = LatencyStats()
    stats.committed([0.4, 1.2])
    stats.partial(0.3)
    assert stats.commit_latency.count == 2 and stats.partial_latency.count == 1
