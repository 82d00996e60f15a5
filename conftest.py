"""Session-wide test settings, for tests/ and plugins/*/tests alike.

xdist runs one test worker per core, and most tests start `gstbench` subprocesses: with
torch's default of one thread per core in each, the cores are oversubscribed and the
suite runs about twice as slow. One thread per test process (children inherit it);
``OMP_NUM_THREADS`` set by hand wins. For the same reason ``gstbench run`` runs its cells
in-process in the tests (``GSTBENCH_EXECUTOR``): the default executor, auto, would start a
pool per test on cores xdist already fills; tests/test_executors.py runs the default.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GSTBENCH_EXECUTOR", "sequential")
