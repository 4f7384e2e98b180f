"""The timing loop, driven by a fake clock so every figure is known exactly."""

import pytest

from bench.timing import MIN_SAMPLES, RetraceError, time_step


class FakeDevice:
    """A clock that advances only when the 'device' works: each step costs ``step_ms``, each sync ``sync_ms``."""

    def __init__(self, step_ms, sync_ms=0.0):
        self.now = 0.0
        self.steps = 0
        self.step_ms = step_ms
        self.sync_ms = sync_ms

    def clock(self):
        return self.now

    def step(self):
        cost = self.step_ms(self.steps) if callable(self.step_ms) else self.step_ms
        self.steps += 1
        self.now += cost / 1e3

    def synchronize(self):
        self.now += self.sync_ms / 1e3


def test_samples_exclude_burn_in_and_include_synchronisation():
    device = FakeDevice(step_ms=lambda i: 500.0 if i == 0 else 2.0, sync_ms=3.0)
    timing = time_step(device.step, device.synchronize, warmup=10, iters=100, clock=device.clock)
    assert device.steps == 110  # the seed's protocol: 10 burn-in + 100 timed
    assert len(timing.samples_ms) == 100
    assert timing.samples_ms == pytest.approx([5.0] * 100)  # step 2 ms + waiting for the device 3 ms
    assert timing.first_step_ms == pytest.approx(503.0)  # the compile-like first call, reported on its own
    assert not timing.capped


def test_without_burn_in_the_first_call_is_a_sample():
    device = FakeDevice(step_ms=lambda i: 50.0 if i == 0 else 1.0)
    timing = time_step(device.step, device.synchronize, warmup=0, iters=5, clock=device.clock)
    assert timing.samples_ms == pytest.approx([50.0, 1.0, 1.0, 1.0, 1.0])
    assert timing.first_step_ms == pytest.approx(50.0)


def test_time_cap_ends_loop_early_but_never_below_min_samples():
    device = FakeDevice(step_ms=1000.0)  # 1 s a step, 3 s budget
    timing = time_step(device.step, device.synchronize, warmup=1, iters=100, max_time_s=3.0, clock=device.clock)
    assert len(timing.samples_ms) == MIN_SAMPLES == 10
    assert timing.capped


def test_time_cap_stops_once_budget_spent_after_minimum():
    device = FakeDevice(step_ms=100.0)  # 0.1 s a step, 2 s budget -> 20 samples
    timing = time_step(device.step, device.synchronize, warmup=0, iters=100, max_time_s=2.0, clock=device.clock)
    assert len(timing.samples_ms) == 20
    assert timing.capped


def test_cap_not_reported_when_all_iterations_ran():
    device = FakeDevice(step_ms=1000.0)
    timing = time_step(device.step, device.synchronize, warmup=0, iters=5, max_time_s=1.0, clock=device.clock)
    assert len(timing.samples_ms) == 5 and not timing.capped


def test_retrace_inside_timed_window_is_an_error():
    device = FakeDevice(step_ms=1.0)
    traces = iter([1, 2])
    with pytest.raises(RetraceError, match="1 -> 2"):
        time_step(device.step, device.synchronize, warmup=2, iters=5, trace_count=lambda: next(traces),
                  clock=device.clock)


def test_progress_reports_both_phases_and_the_end():
    device = FakeDevice(step_ms=1.0)
    events = []
    time_step(device.step, device.synchronize, warmup=3, iters=7, clock=device.clock,
              on_progress=lambda phase, done, total, samples: events.append((phase, done, total)))
    assert ("warmup", 3, 3) in events and ("timed", 7, 7) == events[-1]
    assert events[0][0] == "warmup"


def test_progress_hands_over_every_sample_exactly_once():
    """The worker streams samples with progress so that a process that dies keeps them; none may be lost or
    doubled, however the reports are throttled."""
    device = FakeDevice(step_ms=lambda index: 70.0 + index)  # 70 ms steps: a report every third step or so
    handed: list[float] = []
    timing = time_step(device.step, device.synchronize, warmup=2, iters=25, clock=device.clock,
                       on_progress=lambda phase, done, total, samples: handed.extend(samples))
    assert handed == timing.samples_ms and len(handed) == 25


def test_burn_in_end_is_announced_between_the_phases_with_the_first_step():
    device = FakeDevice(step_ms=lambda index: 500.0 if index == 0 else 2.0)
    seen = []
    time_step(device.step, device.synchronize, warmup=3, iters=4, clock=device.clock,
              on_burn_in_end=lambda first_ms: seen.append((first_ms, device.steps)))
    assert seen == [(500.0, 3)]  # after the three burn-in steps, before any timed one


@pytest.mark.parametrize(("warmup", "iters"), [(-1, 10), (0, 0)])
def test_bad_counts_are_refused(warmup, iters):
    with pytest.raises(ValueError):
        time_step(lambda: None, lambda: None, warmup=warmup, iters=iters)


def test_garbage_collector_paused_only_inside_timed_loop():
    import gc

    states = []
    device = FakeDevice(step_ms=1.0)

    def step():
        states.append(gc.isenabled())
        device.step()

    assert gc.isenabled()
    time_step(step, device.synchronize, warmup=2, iters=3, clock=device.clock)
    assert states == [True, True, False, False, False]
    assert gc.isenabled()


def test_without_burn_in_the_first_trace_is_not_a_retrace():
    device = FakeDevice(step_ms=1.0)
    traces = [0]

    def tracing_step():
        if device.steps == 0:
            traces[0] += 1  # the first call traces, as tf.function and torch.compile do
        device.step()

    timing = time_step(tracing_step, device.synchronize, warmup=0, iters=4, trace_count=lambda: traces[0],
                       clock=device.clock)
    assert len(timing.samples_ms) == 4
