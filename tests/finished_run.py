"""The tiny end-to-end run, shared: a pytest plugin that a test module loads with
`pytest_plugins = ["finished_run"]`, so that every test reading a finished run of the .test config reads
the same one and the DAG runs once per test session. (A module that imported the fixture instead would get
a run of its own.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_workflow import e2e_config, snakemake


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> Path:
    """The folder of the .test config run to the end."""
    workdir = tmp_path_factory.mktemp("e2e")
    snakemake(workdir, e2e_config(), "--cores", "2")
    return workdir
