"""Chaos tests: SIGKILL during saves, Ctrl-C during fit and predict (``agents`` runs them in
processes of their own; ``test_chaos`` checks the counts)."""
