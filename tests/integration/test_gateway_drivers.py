"""Driver plugins as the gateway loads them."""
import os
import shutil
import subprocess

import pytest

import gwtest

BUILD = os.environ.get("TSR_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))


def test_driver_abi_mismatch_refused_at_start(tmp_path):
    drivers = tmp_path / "drivers"
    drivers.mkdir()
    shutil.copy(os.path.join(BUILD, "drivers", "process.so"), drivers)
    shutil.copy(os.path.join(BUILD, "tests", "drivers", "abi_v0.so"), drivers)
    with pytest.raises(RuntimeError) as err:
        gwtest.Gateway(drivers_dir=str(drivers))
    msg = str(err.value)
    assert "abi_v0.so: ABI version 2 (table of " in msg, msg
    assert "but this gateway needs ABI version 3 (" in msg and "rebuild the driver" in msg


def test_missing_default_driver_refused_at_start(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError) as err:
        gwtest.Gateway(drivers_dir=str(tmp_path / "empty"))
    assert "default driver process not found" in str(err.value)
