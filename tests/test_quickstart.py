from tfrecog import quickstart


def test_quickstart_pipeline_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TFRECOG_DATA_DIR", raising=False)
    result = quickstart.run(out_dir=tmp_path, seconds=4, samples=5)
    for name in ("samples.png", "reconstructions.png", "embedding.png", "curves.png", "encoder.onnx"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert result["onnx_max_abs_diff"] < 1e-4
    out = capsys.readouterr().out
    assert "test log-likelihood (importance sampling, K=5)" in out and "quickstart total time" in out
