"""Training: a run's stages of ``fit()`` with their callbacks, and the ``train`` verb's work.

One concept a module, imported by name (``from agelab.training.verb import train``):

- :mod:`~agelab.training.verb`: the ``train`` verb's work: ``train()`` in this process, its status recorded
- :mod:`~agelab.training.run`: ``Trainer``, one run top to bottom (seed, data, model, plan, stages, save, test)
- :mod:`~agelab.training.splits`: the run's data: exclusions, subset, aligned crops, splits, rebalance
- :mod:`~agelab.training.datasets`: the splits' image datasets, made on first use, and their disk cache
- :mod:`~agelab.training.features`: fast mode's one cached pass of the frozen backbone
- :mod:`~agelab.training.losses`: the age-bin loss, one-hot or soft ordinal (``soft_bins``)
- :mod:`~agelab.training.intervals`: age ranges as labels, their targets, losses and metrics
- :mod:`~agelab.training.distill`: a teacher's predictions as targets (``teacher=``), packed labels
- :mod:`~agelab.training.mixup`: faces and their targets blended within a batch (``mixup=``)
- :mod:`~agelab.training.stages`: ``compile_model`` and the stages (heads on features, images, fine-tune)
- :mod:`~agelab.training.plan`: every stage's epochs and steps, fixed up front
- :mod:`~agelab.training.callbacks`: the Keras callbacks, and the one list a stage's ``fit()`` gets
- :mod:`~agelab.training.recorder`: progress.json, history.csv, console lines and the best weights
- :mod:`~agelab.training.events`: TensorBoard scalars without the tensorboard package
- :mod:`~agelab.training.run_scores`: raw outputs on a split, the test predictions and metrics
- :mod:`~agelab.training.devices`: the device description and the distribution strategy
- :mod:`~agelab.training.stop`: stop requests (SIGTERM, Ctrl-C)
- :mod:`~agelab.training.cluster_watch`: a Ray job's watch of its head, which ends it lost when the head dies
- :mod:`~agelab.training.checkpoints`: the run's last epochs saved, to go on from after a crash or a stop
- :mod:`~agelab.training.resume`: a stopped, failed or lost run resumed from its last checkpoint
- :mod:`~agelab.training.errors`: how a run fails, and the one-sentence reason
"""
