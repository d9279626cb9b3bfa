"""The paper's harness (§4): everything that trains, evaluates and reports the experiments.

It uses the library (:mod:`skip_rnn`) as any user would; the library never imports it. Import
its modules by name (``from skip_rnn.experiments import trainer``): this package's ``__init__``
imports nothing, so that ``python -m skip_rnn.experiments.reproduce`` and the library stay light.
"""
