"""The two kinds of refusal every command maps to its own exit code: input that cannot mean anything runnable, and
a machine that lacks what the input needs."""


class UsageError(ValueError):
    """Input that cannot be run as typed; the message says what was wrong and what is accepted."""


class EnvironmentProblem(RuntimeError):
    """Input this machine cannot serve: an engine not installed, a file that cannot be read or written."""
