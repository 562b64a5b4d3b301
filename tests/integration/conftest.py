import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import gwtest  # noqa: E402


@pytest.fixture(scope="module")
def gw():
    g = gwtest.Gateway()
    yield g
    rc = g.stop()
    assert rc == 0, "gateway exited with %s:\n%s" % (rc, g.sanitizer_report())
