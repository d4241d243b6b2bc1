"""bench.readme's ledger of training runs: one row per summary.json, variable-rate spans."""
import json

from bench import readme


def _summary(path, **fields):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(fields))


def test_runs_ledger_lists_every_summary(tmp_path):
    _summary(tmp_path / "train" / "a", codec="student_dw_ckbd", command="python -m student x=1", steps=3000,
             seconds=600.0, resumed_from=0, val={"bpp": 0.2, "psnr_rgb": 28.456})
    _summary(tmp_path / "zoo" / "vr", codec="student_dw_msp", command="python -m student y=2", steps=12000,
             seconds=1800.0, resumed_from=4000,
             val={"bpp": 0.3, "psnr_rgb": 30.0, "bpp@0": 0.1, "psnr_rgb@0": 27.0, "bpp@1": 0.2, "psnr_rgb@1": 29.0,
                  "bpp@2": 0.45, "psnr_rgb@2": 31.5})
    _summary(tmp_path / "bench" / "other", name="not a run")  # no command/steps: not a training run
    text = readme.runs(tmp_path)
    assert text.startswith("2 training runs")
    assert "| `train/a` | `student_dw_ckbd` | 3000 | 10.0 | 1 | 0.200 | 28.46 |" in text
    assert "| `zoo/vr` | `student_dw_msp` | 12000 | 30.0 (from step 4000) | 3 | 0.100 - 0.450 | 27.00 - 31.50 |" in text


def test_runs_ledger_without_runs(tmp_path):
    assert "no training runs yet" in readme.runs(tmp_path)


def _curve(path, name, kind, bpp, psnr):
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.json").write_text(json.dumps({
        "format": "vmuc-lite-bench/1", "name": name, "kind": kind, "codec": name,
        "eval_set": {"count": 2, "dir": "eval"}, "images": [], "results": {"bpp": bpp, "psnr-rgb": psnr}}))


def test_learned_curves_against_classical(tmp_path):
    bench = tmp_path / "bench"
    psnr = [28.0, 30.0, 32.0, 34.0]
    _curve(bench, "jpeg", "classical", [0.2, 0.3, 0.45, 0.7], psnr)
    _curve(bench, "webp", "classical", [0.01, 0.02, 0.03, 0.04], [40.0, 41.0, 42.0, 43.0])  # no overlap
    # the same quality at half of JPEG's bits at every point: BD-rate exactly -50 %
    _curve(bench, "half", "learned", [0.1, 0.15, 0.225, 0.35], psnr)
    text = readme.learned_curves(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| `half`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "4" and cells[3] == "0.100 - 0.350" and cells[4] == "28.00 - 34.00"
    assert cells[5] == "-50.0 % (28.00-34.00)", cells
    assert cells[6] == "n/a (no overlap)"


def test_learned_curves_against_each_other(tmp_path):
    """Row against column, both ways (-50 % and +100 % for half and double the bits), and a
    curve that overlaps no other learned curve is named, not shown."""
    bench = tmp_path / "bench"
    psnr = [28.0, 30.0, 32.0, 34.0]
    _curve(bench, "jpeg", "classical", [0.2, 0.3, 0.45, 0.7], psnr)
    _curve(bench, "a_half", "learned", [0.1, 0.15, 0.225, 0.35], psnr)
    _curve(bench, "b_full", "learned", [0.2, 0.3, 0.45, 0.7], psnr)
    _curve(bench, "c_far", "learned", [1.0, 1.5, 2.0, 2.5], [14.0, 15.0, 16.0, 17.0])
    text = readme.learned_curves(tmp_path)
    assert "Not shown (no overlap with any other): `c_far`" in text
    header = next(line for line in text.splitlines() if line.startswith("| row vs column"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["`a_half`", "`b_full`"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")][1:]
            for line in text.splitlines()[text.splitlines().index(header) + 2:] if line.startswith("| `")}
    assert rows["`a_half`"] == ["", "-50.0 % (28.00-34.00)"]
    assert rows["`b_full`"] == ["+100.0 % (28.00-34.00)", ""]


def test_default_model_text_follows_the_init_from_chain(tmp_path, monkeypatch):
    """Steps of every link from its summary.json; the link before from the checkpoint's own
    training config; a missing checkpoint ends the chain at its summary."""
    import torch

    from codec.checkpoint import save_checkpoint
    from codec.registry import create_codec
    from tests.conftest import tiny_config

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = create_codec("student_tiny", **tiny_config("student_tiny"))
    first, second = tmp_path / "runs" / "first", tmp_path / "runs" / "second"
    for folder, steps in ((first, 300), (second, 700)):
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"steps": steps}))
    # the first run was a distillation: its teacher and KD preset are named
    (first / "summary.json").write_text(json.dumps({"steps": 300, "teacher_path": str(tmp_path / "t" / "last.ckpt"),
                                                    "distill_loss": {"name": "full"}}))
    save_checkpoint(first / "last.ckpt", model, meta={"config": {"trainer": {"max_steps": 300}}})
    save_checkpoint(second / "last.ckpt", model,
                    meta={"config": {"trainer": {"max_steps": 700, "init_from": str(first / "last.ckpt")}}})
    final = {"trainer": {"max_steps": 50, "init_from": str(second / "last.ckpt")}}
    assert readme._init_chain(final, 50) == (", starting from `runs/second/last.ckpt` (700 steps), which started "
                                             "from `runs/first/last.ckpt` (300 steps, distilled from `t/last.ckpt` (KD preset `full`)): "
                                             "1050 steps in all")
    assert readme._init_chain({"trainer": {"max_steps": 50}}, 50) == ""
    # the last run's own steps unknown: no total
    assert readme._init_chain(final, None).endswith(
        "`runs/first/last.ckpt` (300 steps, distilled from `t/last.ckpt` (KD preset `full`))")
    (second / "last.ckpt").unlink()
    assert readme._init_chain(final, 50) == ", starting from `runs/second/last.ckpt` (700 steps): 750 steps in all"


def test_zoo_students_table(tmp_path):
    """Each zoo student against the teacher, its scratch twin and JPEG, with known BD-rates
    (the same PSNR at a constant factor of the bits), its steps (pruning: steps x fine-tuning
    steps) and its profile; a student not benched yet says so."""
    bench = tmp_path / "bench"
    psnr = [28.0, 30.0, 32.0, 34.0]
    bpp = [0.2, 0.3, 0.45, 0.7]
    _curve(bench, "jpeg", "classical", bpp, psnr)
    _curve(bench, "teacher_dw2x_vr", "learned", [b / 2 for b in bpp], psnr)
    _curve(bench, "zoo6_ckbd_scratch", "learned", [b * 0.8 for b in bpp], psnr)
    _curve(bench, "zoo6_ckbd_prune", "learned", [b * 0.8 * 1.25 for b in bpp], psnr)
    blob = json.loads((bench / "zoo6_ckbd_scratch.json").read_text())
    (bench / "zoo6_ckbd_scratch.json").write_text(json.dumps({**blob, "config": {"rates": [0.001, 0.01]}}))
    (tmp_path / "zoo6" / "ckbd" / "scratch").mkdir(parents=True)
    (tmp_path / "zoo6" / "ckbd" / "scratch" / "summary.json").write_text(json.dumps({"steps": 1200}))
    (tmp_path / "zoo6" / "ckbd" / "prune").mkdir(parents=True)
    (tmp_path / "zoo6" / "ckbd" / "prune" / "prune.json").write_text(
        json.dumps({"prune": {"steps": 3, "finetune_steps": 400}}))
    (tmp_path / "profile" / "zoo6_ckbd_prune").mkdir(parents=True)
    (tmp_path / "profile" / "zoo6_ckbd_prune" / "profile.json").write_text(json.dumps({"decoder": {"kmac_per_px": 1.5}}))
    text = readme.zoo_students(tmp_path)
    assert "2 rates each (betas 0.001, 0.01)" in text
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")][1:]
            for line in text.splitlines() if line.startswith("| `zoo6")}
    # columns after the name: context, trained, steps, kMAC/px, bpp, PSNR, teacher, twin, jpeg
    scratch, prune = rows["`zoo6_ckbd_scratch`"], rows["`zoo6_ckbd_prune`"]
    assert scratch[2] == "1200" and scratch[3] == "?" and scratch[6] == "+60.0 % (28.00-34.00)"
    assert scratch[7] == "" and scratch[8] == "-20.0 % (28.00-34.00)"
    assert prune[2] == "1200 (3 x 400)" and prune[3] == "1.500" and prune[7] == "+25.0 % (28.00-34.00)"
    assert prune[8] == "+0.0 % (28.00-34.00)" or prune[8] == "-0.0 % (28.00-34.00)"
    assert rows["`zoo6_msp_distill`"][2] == "not benched yet"
    assert "no zoo students benched yet" in readme.zoo_students(tmp_path / "empty")


def test_readme_command_updates_the_markers_and_refuses_a_missing_file(tmp_path, capsys):
    from bench import readme

    assert readme.main([str(tmp_path / "missing.md")]) == 2
    assert "is not a file" in capsys.readouterr().err
    doc = tmp_path / "README.md"
    doc.write_text("intro\n<!-- results:speed -->\nold table\n<!-- /results:speed -->\nend\n")
    assert readme.main([str(doc), str(tmp_path / "results")]) == 0
    text = doc.read_text()
    assert "old table" not in text and "no speed results yet" in text and text.endswith("end\n")
