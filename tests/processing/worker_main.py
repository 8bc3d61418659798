"""``python -m tests.processing.worker_main '<config json>'``: a real ARQ worker process
running :func:`processing.worker.run_worker` with a test's :class:`ProcessingConfig`."""

from __future__ import annotations

import json
import logging
import sys

from processing.config import ProcessingConfig
from processing.worker import run_worker

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_worker(ProcessingConfig(**json.loads(sys.argv[1])))
