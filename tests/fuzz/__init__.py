"""The loaders' fuzz suite: ``harness`` (mutators, the child runner, the counts),
``targets`` (the registry of loaders), ``crafting`` (seed and hostile files), ``child`` (the
sandboxed loader process), ``run`` (``make fuzz``) and ``test_fuzz_fast`` (the seeded quick
run of the test suite). A new loader plugs in with ``harness.register(Target(...))``."""
