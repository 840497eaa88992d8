"""HarnessTestCase: unittest.TestCase that owns the fixtures a test starts.

    class RelayTest(HarnessTestCase):
        def test_relay(self):
            pf = self.start(Postfix())
            pc = self.start(Portcullis(upstream=pf))

start() registers the fixture's stop() as a cleanup before starting it, so every process is
stopped even when start() or the test fails. When a test fails, the tail of each fixture's log
is printed and its temp dir is kept (the path is printed) for a post-mortem.
"""

import functools
import sys
import unittest

from .process import tail
from .tls import make_certs


class HarnessTestCase(unittest.TestCase):
    def start(self, fixture):
        self.addCleanup(fixture.stop)
        self.addCleanup(self._report_if_failed, fixture)  # runs before stop (LIFO)
        fixture.start()
        return fixture

    def make_certs(self, **kwargs):
        certs = make_certs(**kwargs)
        self.addCleanup(certs.remove)
        return certs

    def _failed(self):
        """Whether this test has failed or errored so far. Read from the result, where unittest
        records each error as it happens: the outcome's `success` cannot be used here, as
        Python 3.11+ resets it to True for every part (setUp, the test, each cleanup)."""
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return False
        return any(getattr(test, "test_case", test) is self  # a subTest names its test_case
                   for test, _ in list(result.errors) + list(result.failures))

    def _report_if_failed(self, fixture):
        if not self._failed():
            return
        fixture.keep = True
        try:
            text = fixture.log_text()
        except Exception as exc:  # a broken fixture must not hide the real failure
            text = f"(log unavailable: {exc})"
        print(f"\n----- {type(fixture).__name__} log tail ({fixture.tmpdir}) -----\n"
              f"{tail(text, 40)}\n-----", file=sys.stderr)


def _stopping_daemons(test):
    """Stop the test's portcullis instances inside the test itself, so that a crash or an
    unclean exit (Portcullis.stop() asserts exit code 0 and no sanitizer report) fails THIS
    test, and an @unittest.expectedFailure covers it too (cleanups run outside it)."""
    @functools.wraps(test)
    def wrapper(self):
        # A known bug (expectedFailure) must not leave a kept temp dir behind on every run.
        self._keep_on_failure = not getattr(test, "__unittest_expecting_failure__", False)
        try:
            test(self)
        finally:
            for daemon in reversed(self._daemons):
                daemon.stop()
    return wrapper


class DaemonTestCase(HarnessTestCase):
    """HarnessTestCase whose tests stop the daemons registered with start_daemon() before
    they return (see _stopping_daemons)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if name.startswith("test") and callable(value):
                setattr(cls, name, _stopping_daemons(value))

    def setUp(self):
        self._daemons = []
        self._keep_on_failure = True

    def start_daemon(self, fixture):
        self.start(fixture)
        self._daemons.append(fixture)
        return fixture
