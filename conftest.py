"""Session-wide test settings, for tests/ and plugins/*/tests alike.

xdist runs one test worker per core, and most tests start `gstbench` subprocesses: with
torch's default of one thread per core in each, the cores are oversubscribed and the
suite runs about twice as slow. One thread per test process (children inherit it);
``OMP_NUM_THREADS`` set by hand wins.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
