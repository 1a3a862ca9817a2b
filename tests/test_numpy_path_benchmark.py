"""benchmarks/numpy_path.py's summary of several passes (no timing here)."""
from benchmarks import numpy_path


def _row(name, ck, torch, err=1e-7, bound=1e-4):
    return {"workload": name, "convkit_ms": ck, "torch_ms": torch, "ratio": ck / torch,
            "rel_err": err, "rel_err_bound": bound, "mismatch": err > bound}


def test_summary_takes_medians_ranges_and_any_mismatch():
    passes = [[_row("conv", 3.0, 1.0), _row("pool", 1.0, 1.0)],
              [_row("conv", 5.0, 2.0), _row("pool", 1.5, 1.0, err=1e-3)],
              [_row("conv", 4.0, 1.0), _row("pool", 1.2, 1.0)]]
    conv, pool = numpy_path.summarise(passes)
    assert (conv["convkit_ms"], conv["torch_ms"], conv["ratio"]) == (4.0, 1.0, 3.0)
    assert conv["ratio_range"] == [2.5, 4.0] and not conv["mismatch"]
    assert pool["mismatch"] and pool["rel_err"] == 1e-3
    assert "> 2x" in numpy_path.format_row(conv)
    line = numpy_path.format_row(pool)
    assert line.split()[-4] == "ok" and "MISMATCH (bound 1e-04)" in line
