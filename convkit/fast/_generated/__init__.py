"""Kernels written by ``tools/gen_*.py`` (``make generate``); each module's first line names
its generator. Edit the generator, never these files: ``tests/ops_fast`` checks that each
committed module is what its generator writes."""
