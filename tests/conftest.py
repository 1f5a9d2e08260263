"""Session settings: `datasets` caches in a temporary folder, so that the many small data folders the tests
read (sources.py caches each as Arrow) do not pile up in the user's Hugging Face cache."""

import os
import shutil
import tempfile

_CACHE = None
if "HF_DATASETS_CACHE" not in os.environ:  # set before any test module imports datasets (which reads it once)
    _CACHE = os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="routemix-tests-datasets-")


def pytest_unconfigure(config):
    if _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)
