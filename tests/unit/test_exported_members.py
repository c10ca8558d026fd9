import rfmflow


def test_the_public_api_is_exactly_the_intended_names() -> None:
    assert set(rfmflow.__all__) == {
        "EngineError", "ExpressionError", "InputError", "RejectedRowError", "RfmflowError", "Scheme",
        "SchemeError", "ScoreResult", "builtin_names", "load_scheme", "scheme_from_dict",
        "scheme_from_yaml", "score", "predict", "PredictResult", "ModelError", "ModelFitError", "cluster",
        "ClusterRun",
    }  # fmt: skip
    for name in rfmflow.__all__:
        assert getattr(rfmflow, name) is not None


def test_importing_builds_nothing() -> None:
    """Nothing heavy at import time: no DuckDB connection, no matplotlib."""
    import subprocess
    import sys

    code = (
        "import sys, rfmflow; print('matplotlib' in sys.modules, 'rfmflow.report' in sys.modules, "
        "'scipy' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "False"]
