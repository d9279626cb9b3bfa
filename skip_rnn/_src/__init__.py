"""The implementation of :mod:`skip_rnn`; import the public names from ``skip_rnn``."""
