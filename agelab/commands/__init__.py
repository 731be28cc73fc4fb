"""The verbs' command lines: argument parsing and printing; the logic lives in the concept modules.

``agelab.cli`` dispatches ``python -m agelab VERB`` to ``agelab.commands.<verb>.cli(argv)``:

- :mod:`~agelab.commands.train`: one run in this process (``agelab.training.verb``)
- :mod:`~agelab.commands.predict`: the faces in image files (``agelab.file_predictions``)
- :mod:`~agelab.commands.rescore`: runs scored on the shared test split (``agelab.evaluation.shared_split``)
- :mod:`~agelab.commands.setup`: the UTKFace images, Keras weights and face detector (``agelab.assets``)
- :mod:`~agelab.commands.index`: a data folder's index and its flaws (``agelab.data_sources``)
- :mod:`~agelab.commands.evaluate`: a saved model on a labelled folder (``agelab.evaluation.evaluate``)
- :mod:`~agelab.commands.calibrate`: a model's temperatures (``agelab.model_calibration``)
- :mod:`~agelab.commands.ensemble`: models averaged, calibrated and exported (``agelab.release``)
- :mod:`~agelab.commands.export`: a model's LiteRT twins (``agelab.litert_export``)
- :mod:`~agelab.commands.cluster`: a Ray head on 127.0.0.1 (``agelab.cluster``)
- :mod:`~agelab.commands.sweep`: a grid of runs or a Tune search (``agelab.sweeps``, ``agelab.tune``)
- :mod:`~agelab.commands.runs`: runs listed, launched, watched, stopped (``agelab.launchers``)
"""
