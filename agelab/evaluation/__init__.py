"""Evaluation: how far off a model is, in ordinal bins, overall and per slice, and on which faces.

One concept a module, imported by name (``from agelab.evaluation.metrics import headline``):

- :mod:`~agelab.evaluation.predictions`: the predictions contract, its one builder and its derived columns
- :mod:`~agelab.evaluation.intervals`: Wilson and bootstrap 95 % intervals
- :mod:`~agelab.evaluation.metrics`: headline, run metrics, distances, confusion, per-bin, slices, comparisons
- :mod:`~agelab.evaluation.gallery`: the Review gallery's filters, order, pages, tiles and Plotly selections
- :mod:`~agelab.evaluation.fairness`: gender accuracy for women, men and each decade, with intervals
- :mod:`~agelab.evaluation.ranges`: an age range label scored against its nearest point
- :mod:`~agelab.evaluation.mistakes`: confident mistakes and their conflicting duplicates
- :mod:`~agelab.evaluation.export`: a predictions table as CSV
- :mod:`~agelab.evaluation.scoring`: image files through a predictor into a predictions table
- :mod:`~agelab.evaluation.sources`: where predictions tables live, and the default model's cached scores
- :mod:`~agelab.evaluation.evaluate`: a folder evaluated (``evaluate_folder``) and summarised (``summarize``)
- :mod:`~agelab.evaluation.review_charts`: the Review page's Plotly charts (confusion, distances)
- :mod:`~agelab.evaluation.shared_split`: runs scored on one shared test split, so their metrics compare
"""
