"""Reading results out: leaderboards, claims and their statistics, comparisons, figures and pages.

Named ``reports``, not ``results``: ``gstbench.results(DIR)`` is the notebook function plugin
authors call, and a subpackage of that name would shadow it once imported.
"""

ALPHA = 0.05  # the significance level of every test the reports run: claims, power, compare
DEFAULT_TOLERANCE = 0.005  # compare: the smallest change that counts, half a percentage point on accuracies
