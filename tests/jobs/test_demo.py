"""python -m mae.demo (mae.demo): a short pretraining that saves its checkpoint and draws its figures."""


def test_demo_pretrains_and_draws(tmp_path):
    from mae import demo

    demo.main(["--output-dir", str(tmp_path), "--epochs", "1", "--max_steps", "6"])
    assert (tmp_path / "checkpoint-last.pth").exists()
    assert (tmp_path / "loss.png").stat().st_size > 5_000
    assert (tmp_path / "reconstruction.png").stat().st_size > 20_000
