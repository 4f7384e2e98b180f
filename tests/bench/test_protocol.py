"""The protocol between a measuring child and its parent: whole messages whatever their size, and a child that is
told to end (SIGTERM) sends the samples it holds first."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from bench import protocol
from bench.protocol import Outcome, Progress, decode

REPO = Path(__file__).resolve().parents[2]


def test_messages_fit_one_pipe_write_whatever_the_sample_count(monkeypatch):
    written = []
    channel = protocol.Channel.__new__(protocol.Channel)
    channel.rank, channel._fd = 3, -1
    monkeypatch.setattr(protocol.os, "write", lambda fd, data: written.append(data))
    samples = tuple(1234.5678901234 + i for i in range(2000))
    channel.send(Progress(phase="timed", done=2000, total=2000, samples=samples))
    assert len(written) > 1 and all(len(line) <= protocol.PIPE_BUF for line in written)
    messages = [decode(line.decode()) for line in written]
    assert tuple(value for message in messages for value in message.samples) == samples
    assert {message.rank for message in messages} == {3} and {message.done for message in messages} == {2000}


def test_a_message_survives_the_round_trip_and_stray_lines_are_not_messages():
    outcome = Outcome(status="failed", reason="RuntimeError: boom", settings={"threads": 2}, rank=1)
    assert decode(json.dumps(protocol.encode(outcome))) == outcome
    for stray in ("2026-12-03 I tensorflow/core: started", "{}", '{"event": "nonsense"}', "[1, 2]"):
        assert decode(stray) is None


# A child holding samples it has not sent (well inside the progress interval) when SIGTERM arrives while its main
# thread is busy: the samples still reach the parent, and the child ends with status 128 + SIGTERM.
HOLDING_CHILD = """
import sys, time
from bench.child import SampleStream, send_held_samples_on_sigterm
from bench.protocol import Channel
channel = Channel()
stream = SampleStream(channel, clock=lambda: 0.0)  # a clock that never moves: nothing is sent on its own
send_held_samples_on_sigterm(stream)
report = stream.on_progress("timed")
report("timed", 1, 1000, [1.5])
stream.flush()  # one message out: the parent knows the child is running
for index in range(2, 50):
    report("timed", index, 1000, [float(index)])
print("holding", file=sys.stderr, flush=True)
while True:
    sum(range(10_000))  # busy in the main thread, as a step is
"""


def test_sigterm_sends_the_samples_a_child_holds_before_it_ends():
    child = subprocess.Popen([sys.executable, "-c", HOLDING_CHILD], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stderr.readline().strip() == "holding"
        child.send_signal(signal.SIGTERM)
        stdout, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGTERM
    samples = [value for line in stdout.splitlines() for value in decode(line).samples]
    assert samples == [1.5, *map(float, range(2, 50))]
