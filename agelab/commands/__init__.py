"""The verbs' command lines: argument parsing and printing; the logic lives in the concept modules.

``agelab.cli`` dispatches ``python -m agelab VERB`` to ``agelab.commands.<verb>.cli(argv)``:

- :mod:`~agelab.commands.setup`: the UTKFace images, Keras weights and face detector (``agelab.assets``)
- :mod:`~agelab.commands.index`: a data folder's index and its flaws (``agelab.data_sources``)
- :mod:`~agelab.commands.evaluate`: a saved model on a labelled folder (``agelab.evaluation.evaluate``)
- :mod:`~agelab.commands.calibrate`: a model's temperatures (``agelab.model_calibration``)
- :mod:`~agelab.commands.ensemble`: models averaged, calibrated and exported (``agelab.release``)
- :mod:`~agelab.commands.export`: a model's LiteRT twins (``agelab.litert_export``)

``train`` (``agelab.training.verb``), ``runs`` (``agelab.launchers``), ``sweep`` (``agelab.sweeps``) and
``predict`` (``agelab.predict``) keep their command lines beside their logic for now.
"""
