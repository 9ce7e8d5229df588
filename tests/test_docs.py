"""The README, docs/EXPERIMENTS.md, docs/RESEARCH_RUNS.md and docs/ROBUSTNESS.md against the files they are
rendered from (benchmarks/render_results.py, whose blocks live in benchmarks/rendering/).

A table that no longer matches its JSON, a cited JSON that is missing, a kept run that nothing cites, or a README
over 20 KB fails here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXPERIMENTS = ROOT / "docs" / "EXPERIMENTS.md"
RESEARCH_RUNS = ROOT / "docs" / "RESEARCH_RUNS.md"
ROBUSTNESS = ROOT / "docs" / "ROBUSTNESS.md"
RESULTS = ROOT / "benchmarks" / "results"
PAPER_MD = ROOT.parent / "shared" / "PAPER.md"


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_results", ROOT / "benchmarks" / "render_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_renderer()


@pytest.fixture(scope="module")
def rendered():
    return render.render_all()


def test_rendered_tables_are_not_stale(rendered):
    docs, _ = rendered
    stale = [doc for doc, (current, new) in docs.items() if current != new]
    assert not stale, f"stale tables in {stale}: run python benchmarks/render_results.py and commit the result"


def test_every_marker_is_a_closed_known_block():
    for path in (README, EXPERIMENTS, RESEARCH_RUNS, ROBUSTNESS):
        text = path.read_text(encoding="utf-8")
        openings = re.findall(r"<!-- results:([\w-]+)(?: [^\s>]+)? -->", text)
        blocks = list(render.BLOCK.finditer(text))
        assert len(openings) == len(blocks), f"{path.name}: a results marker is not closed"
        assert {m.group("name") for m in blocks} <= set(render.BLOCKS), path.name
    assert "<!-- results:beauty -->" in README.read_text(encoding="utf-8")
    for name in ("complementarity", "rank-fusion-probe"):
        assert f"<!-- results:{name} -->" in EXPERIMENTS.read_text(encoding="utf-8"), name
    assert "<!-- results:research -->" in RESEARCH_RUNS.read_text(encoding="utf-8")
    assert "<!-- results:load-checks -->" in ROBUSTNESS.read_text(encoding="utf-8")


def test_readme_is_at_most_20_kb():
    size = len(README.read_bytes())
    assert size <= 20 * 1024, f"README.md is {size} bytes; move detail to docs/"


def test_every_results_path_the_docs_name_exists():
    pattern = re.compile(r"benchmarks/results/([\w./-]+)")
    for path in (README, EXPERIMENTS, RESEARCH_RUNS):
        for rel in pattern.findall(path.read_text(encoding="utf-8")):
            rel = rel.rstrip(".")
            if not rel or "RUN" in rel or rel.startswith("quickstart/") or rel.startswith("research"):
                continue  # placeholders in prose; the quickstart file may not be recorded yet
            assert (RESULTS / rel).exists(), f"{path.name} cites benchmarks/results/{rel}, which does not exist"


def test_every_kept_run_and_result_file_is_cited(rendered):
    """Pruning: every run folder (a results.json) and every top-level JSON is read by some rendered table."""
    _, read = rendered
    kept = sorted(p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("*.json") if "research" not in p.parts)
    uncited = [rel for rel in kept if rel not in read and not Path(rel).name.startswith("training_summary")]
    assert not uncited, f"kept but cited by no table: {uncited} (cite them in docs/EXPERIMENTS.md or git rm them)"
    for rel in (p for p in kept if Path(p).name.startswith("training_summary")):
        run = Path(rel).parent.as_posix()
        assert f"{run}/results.json" in read, f"{rel} belongs to a run nothing cites"


def test_a_missing_cited_file_fails_the_render(tmp_path):
    renderer = render.Renderer(tmp_path)
    with pytest.raises(FileNotFoundError, match="cited by the docs"):
        render.render_text("<!-- results:speed -->\n<!-- /results:speed -->", renderer)


def test_readme_keeps_the_two_commands_and_install_from_the_repository():
    text = README.read_text(encoding="utf-8")
    assert "bash scripts/quickstart.sh     # install into .venv" in text
    assert "bash scripts/run_tests.sh      # install into .venv" in text
    assert 'pip install -e ".[encoder,faiss]"' in text
    flat = " ".join(text.split())
    for match in re.finditer(r"pip install cobra-hf", flat):
        assert "finds nothing" in flat[match.end(): match.end() + 40], "README suggests pip install cobra-hf"
    assert "## Robustness" in text and "docs/ROBUSTNESS.md" in text
    assert (ROOT / "docs" / "ROBUSTNESS.md").is_file()


def test_research_runs_are_picked_up_generically(tmp_path):
    renderer = render.Renderer(tmp_path)
    assert render.block_research(renderer) == "No runs yet."
    (tmp_path / "research").mkdir()
    run = {
        "name": "ids_only_3x32",
        "command": "python benchmarks/research_run.py --name ids_only_3x32 --data ../shared/data/beauty",
        "train_seconds": 1500.0,
        "global_step": 2976,
        "validation": {
            "sparse": {"recall@5": 0.0312, "ndcg@5": 0.02, "recall@10": 0.0451, "ndcg@10": 0.025, "users": 22363,
                       "se_recall@5": 0.00116, "se_ndcg@5": 0.00094, "se_recall@10": 0.00139, "se_ndcg@10": 0.001},
            "cobra_paper_fusion": {"recall@5": 0.03, "ndcg@5": 0.02, "recall@10": 0.04, "ndcg@10": 0.025,
                                   "users": 22363},
        },
        "diagnostics": {
            "teacher_forced": {"top1_valid": [0.21, 0.34, 0.5], "all_levels_top1_true_prefix": 0.04},
            "beam_search": {"id_hit_rate": {"1": 0.01, "20": 0.0475}},
            "gradients": {"share": {"sparse_loss": 0.25, "dense_loss": 0.35, "history_dense_loss": 0.4}},
        },
    }
    (tmp_path / "research" / "ids_only_3x32.json").write_text(json.dumps(run))
    (tmp_path / "research" / "no_diagnostics.json").write_text(json.dumps({"name": "no_diagnostics"}))
    text = render.block_research(renderer)
    assert "#### `ids_only_3x32`" in text and run["command"] in text
    assert "training 25.0 minutes" in text
    assert "| sparse only (ID only) | 0.0312 ± 0.0012 | 0.0200 ± 0.0009 | 0.0451 ± 0.0014 | 0.0250 ± 0.0010 |" in text
    assert "COBRA mode, the paper's BeamFusion | 0.0300 |" in text
    assert "0.210 / 0.340 / 0.500" in text and "20: 0.048" in text and "history_dense_loss 40%" in text
    assert "#### `no_diagnostics`" in text  # a partial file still renders
    assert "research/ids_only_3x32.json" in renderer.read


def test_a_research_runs_expectations_are_shown_once(tmp_path):
    """The `--expected` text leaves the command and appears once; a later seed with the same text points back."""
    (tmp_path / "research").mkdir()
    expected = "## 0\nExpected: seed 0's COBRA .10-.11; 'quoted' and ```fenced``` text.\n"
    for seed in (0, 1):
        name = f"trunk_s{seed}"
        command = (f"python benchmarks/research_run.py --name {name} --train-args '--seed {seed}' "
                   f"--expected {shlex.quote(expected)} --test")
        (tmp_path / "research" / f"{name}.json").write_text(json.dumps(
            {"name": name, "command": command, "expected": expected}))
    (tmp_path / "research" / "trunk_s2.json").write_text(json.dumps(
        {"name": "trunk_s2", "command": "python benchmarks/research_run.py --name trunk_s2 --expected 'other'",
         "expected": "other"}))
    text = render.block_research(render.Renderer(tmp_path))
    assert text.count("Expected: seed 0's COBRA") == 1 and text.count("<details>") == 2
    assert "--name trunk_s0 --train-args '--seed 0' --expected \"$EXPECTED\" --test" in text
    assert "`$EXPECTED` is the text of `trunk_s0` above" in text
    assert "````text\n## 0\nExpected" in text  # a longer fence, since the text holds one
    section_s2 = text[text.index("#### `trunk_s2`"):]
    assert "```text\nother\n```" in section_s2 and "is the text of" not in section_s2


def test_cascade_research_files_are_picked_up_generically(tmp_path):
    """complementarity.py and rank_fusion_probe.py outputs render as they appear; other probes in the folder do not."""
    renderer = render.Renderer(tmp_path)
    assert render.BLOCKS["complementarity"](renderer) == "No complementarity files yet."
    assert render.BLOCKS["rank-fusion-probe"](renderer) == "No rank-fusion probes yet."
    folder = tmp_path / "research" / "complementarity"
    folder.mkdir(parents=True)

    def share(rate, se=0.004):
        return {"rate": rate, "se": se}

    (folder / "a.json").write_text(json.dumps({
        "dense_model": "runs/research/joint/model", "sparse_model": "runs/research/ids_only/model", "users": 5000,
        "k": 10, "num_beams": 20, "recall": {"dense": share(0.0984), "sparse": share(0.0782)},
        "either_dense_or_sparse": share(0.1206), "both": share(0.0404), "sparse_only_hits": share(0.0222),
        "dense_only_hits": share(0.058), "list_overlap_mean": 0.2603}))
    grid = [{"fusion": "dense", "recall@10": 0.1, "ndcg@10": 0.05},
            {"fusion": "sparse", "recall@10": 0.06, "ndcg@10": 0.03},
            {"fusion": "rrf", "w": 0.7, "c": 60.0, "recall@10": 0.103, "ndcg@10": 0.06},
            {"fusion": "rrf", "w": 0.6, "c": 60.0, "recall@10": 0.103, "ndcg@10": 0.061},
            {"fusion": "rrf", "w": 0.9, "c": 1.0, "recall@10": 0.101, "ndcg@10": 0.07}]
    (folder / "rank_probe_joint.json").write_text(json.dumps(
        {"model": "runs/research/joint/model", "sparse_model": "runs/research/joint/model", "users": 5000,
         "length": 50, "grid": grid}))
    (folder / "prefix_prior_joint.json").write_text(json.dumps(
        {"model": "runs/research/joint/model", "grid": [{"tau": 0.0, "recall@10": 0.1, "ndcg@10": 0.05}]}))
    text = render.BLOCKS["complementarity"](renderer)
    assert ("| dense `joint`, sparse `ids_only` | 5000 | 0.0984 ± 0.0040 | 0.0782 ± 0.0040 | 0.1206 ± 0.0040 | "
            "0.0404 ± 0.0040 | 0.0222 ± 0.0040 | 0.0580 ± 0.0040 | 0.2603 | - |") in text
    assert renderer.read == ["research/complementarity/a.json"]
    renderer.read = []
    text = render.BLOCKS["rank-fusion-probe"](renderer)
    # the best RRF row by R@10, the tie broken by N@10; its gain over the dense half
    assert "| `joint` | 5000 | 0.1000 / 0.0500 | 0.0600 / 0.0300 | 0.6 | 60 | 0.1030 / 0.0610 | +3.0% |" in text
    assert "best of 3 RRF settings" in text and "lists of length 50" in text
    assert renderer.read == ["research/complementarity/rank_probe_joint.json"]


def test_paper_rows_match_the_paper_notes():
    if not PAPER_MD.is_file():
        pytest.skip("../shared/PAPER.md is not here")
    paper = json.loads((RESULTS / "paper.json").read_text(encoding="utf-8"))["datasets"]
    rows = {}
    for line in PAPER_MD.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 13 and cells[0] in ("SASRec", "S3-Rec", "TIGER", "COBRA"):
            rows[cells[0]] = [None if c == "n/a" else float(c) for c in cells[1:]]
    assert set(rows) == {"SASRec", "S3-Rec", "TIGER", "COBRA"}
    for model, values in rows.items():
        for i, dataset in enumerate(("beauty", "sports", "toys")):
            expected = values[4 * i: 4 * i + 4]
            assert [paper[dataset][model][m] for m in render.METRICS] == expected, (model, dataset)


def test_fusion_grids_and_decoding_speed_render_against_their_reference_points(tmp_path):
    """A fusion grid holding a dense-mode point shows every point's gain over it on the same users (a grid without one
    shows '-'); bench_decoding.py files render each setting against the first."""
    renderer = render.Renderer(tmp_path)
    assert render.BLOCKS["decoding-speed"](renderer) == "No decoding-speed measurements yet."
    folder = tmp_path / "research" / "fusion"
    folder.mkdir(parents=True)
    joint = {"beam_fusion": "joint", "dense_guided_ids": 50, "beam_fusion_tau": 0.3, "beam_fusion_psi": 2,
             "beam_fusion_dense_psi": 16}
    (folder / "trunk.json").write_text(json.dumps({
        "grid": [{"setting": {"mode": "dense"}, "validation": {"recall@10": 0.1, "ndcg@10": 0.05, "users": 5000}},
                 {"setting": {"mode": "cobra", **joint, "num_beams": 1},
                  "validation": {"recall@10": 0.104, "ndcg@10": 0.0505, "users": 5000}}],
        "paper_validation": {"recall@10": 0.07, "ndcg@10": 0.04, "users": 5000}}))
    (folder / "joint.json").write_text(json.dumps({
        "grid": [{"setting": joint, "validation": {"recall@10": 0.1, "ndcg@10": 0.05, "users": 5000}}],
        "paper_validation": {"recall@10": 0.07, "ndcg@10": 0.04, "users": 5000}}))
    text = render.BLOCKS["research-fusion"](renderer)
    assert "| `trunk` | dense mode | 0.1000 | 0.0500 | - | 5000 |" in text
    assert "| `trunk` | joint, tau 0.3, psi 2, psi_h 16, G 50, M 1 | 0.1040 | 0.0505 | +4.0% / +1.0% | 5000 |" in text
    assert "| `trunk` | the paper's BeamFusion (tau 0.9, psi 16) | 0.0700 | 0.0400 | -30.0% / -20.0% | 5000 |" in text
    assert "| `joint` | joint, tau 0.3, psi 2, psi_h 16, G 50 | 0.1000 | 0.0500 | - | 5000 |" in text
    speed = tmp_path / "research" / "decoding_speed"
    speed.mkdir()
    (speed / "trunk.json").write_text(json.dumps({"results": [
        {"setting": {"num_beams": 20}, "users_per_second": 40.7, "ratio": 1.0, "same_top10_share": 1.0},
        {"setting": {"num_beams": 1}, "users_per_second": 57.0, "ratio": 1.401, "same_top10_share": 0.8564}]}))
    text = render.BLOCKS["decoding-speed"](renderer)
    assert "| `trunk` | num_beams 1 | 57.0 | 1.40x | 0.856 |" in text
    assert "research/decoding_speed/trunk.json" in renderer.read


def test_final_read_renders_each_seed_with_both_splits(tmp_path):
    """The final recipe's block: mean ± sd over the seeds that have a test read, the cascade's gain on both splits,
    the picked decoding per seed; a seed still training (no "test") is left out, an unknown dataset is an error."""
    renderer = render.Renderer(tmp_path)
    assert render.BLOCKS["final-read"](renderer, "beauty") == "No seed read yet."
    with pytest.raises(ValueError, match="unknown dataset"):
        render.BLOCKS["final-read"](renderer, "toys")
    (tmp_path / "research").mkdir()

    def scores(cobra, dense, users):
        return {mode: {"recall@5": value / 2, "ndcg@5": value / 4, "recall@10": value, "ndcg@10": value / 2,
                       "users": users} for mode, value in (("cobra", cobra), ("dense", dense), ("sparse", 0.07))}

    picked = {"chosen": "grid[0]", "users": 2000, "chosen_settings": {
        "beam_fusion": "joint", "dense_guided_ids": 50, "beam_fusion_tau": 0.45, "beam_fusion_psi": 2.0,
        "beam_fusion_dense_psi": 16.0}}
    for name, seed, cobra in (("recipe_trunk", 0, 0.084), ("recipe_trunk_s1", 1, 0.086)):
        (tmp_path / "research" / f"{name}.json").write_text(json.dumps({
            "name": name, "train_args": f"--recipe trunk --seed {seed}", "train_seconds": 3600.0,
            "decoding_selection": picked if seed == 0 else None,
            "validation": scores(cobra + 0.02, 0.1, 22363), "test": scores(cobra, 0.08, 22363)}))
    (tmp_path / "research" / "recipe_trunk_s2.json").write_text(json.dumps({"name": "recipe_trunk_s2"}))
    text = render.BLOCKS["final-read"](renderer, "beauty")
    assert "| **COBRA mode** (the decoding picked on validation) | 0.1050 ± 0.0014 / 0.0525 ± 0.0007 |" in text
    assert "| 0.0850 ± 0.0014 | 0.0425 ± 0.0007 |" in text  # test R@10 and N@10 over the two seeds
    assert "| COBRA mode over its own dense mode | +5.0% ± 1.4 / +5.0% ± 1.4 |" in text
    assert "+6.2% ± 1.8" in text  # test: 0.084 and 0.086 over 0.08
    assert "2 seeds read so far" in text and "sparse only (ID only)" in text and "no BeamFusion" not in text
    assert "decoding grid[0] (joint BeamFusion, tau 0.45, psi 2, psi_h 16, G 50; 2,000 users)" in text
    assert "decoding not recorded" in text
    assert renderer.read == ["research/recipe_trunk.json", "research/recipe_trunk_s1.json"]  # not the unread seed
    (tmp_path / "research" / "test").mkdir()
    (tmp_path / "research" / "test" / "paper_recipe_3x32.json").write_text(json.dumps(
        [{"mode": "cobra", "recall@5": 0.0142, "ndcg@5": 0.0092, "recall@10": 0.0232, "ndcg@10": 0.0121}]))
    renderer.read = []
    text = render.BLOCKS["final-read"](renderer, "beauty")
    assert "| `--recipe paper` (the paper's configuration and decoding), COBRA mode | - | 0.0142 | 0.0092 |" in text
    assert "research/test/paper_recipe_3x32.json" in renderer.read


def test_goals_block_judges_each_goal_from_its_files(tmp_path):
    """Issue 21's goals: a mean at or over the bar is met, one short by at most one sd over seeds is level, else the
    shortfall is named; goal 4 waits for three seeds per dataset and the default recipe."""
    verdict = render.verdict
    assert verdict([0.10, 0.11], 0.105) == "yes"
    assert verdict([0.0382, 0.0384, 0.0383], 0.0384) == "level (within one sd)"
    assert verdict([0.08], 0.09) == "no (-11.1%)"
    (tmp_path / "research" / "test").mkdir(parents=True)
    (tmp_path / "paper.json").write_text(json.dumps({"datasets": {"beauty": {"TIGER": {
        "recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}}}}))
    for seed, (recall, ndcg) in enumerate([(0.0661, 0.0386), (0.0657, 0.0384)]):
        (tmp_path / "research" / "test" / f"ids_only_rqktext3x256d_itemout_drop02_wd1_e32_s{seed}.json").write_text(
            json.dumps({"recall@10": recall, "ndcg@10": ndcg, "mode": "sparse"}))

    def split(cobra, dense):
        return {mode: {"recall@10": value, "ndcg@10": value / 2, "users": 100}
                for mode, value in (("cobra", cobra), ("dense", dense), ("sparse", 0.06))}

    for seed, cobra in enumerate([0.080, 0.084]):
        (tmp_path / "research" / f"recipe_trunk_s{seed}.json").write_text(json.dumps({
            "name": f"recipe_trunk_s{seed}", "train_seconds": 3500 + 200 * seed,
            "validation": split(0.105, 0.100), "test": split(cobra, 0.075)}))
    (tmp_path / "research" / "recipe_trunk_s9.json").write_text(json.dumps({"name": "still scoring",
                                                                            "validation": split(0.2, 0.1)}))
    renderer = render.Renderer(tmp_path)
    text = render.BLOCKS["goals"](renderer)
    assert "`--recipe ids`, 2 seeds: 0.0659 ± 0.0003 / 0.0385 ± 0.0001 | yes / yes |" in text
    # exactly at the bar is at it (0.105 / 0.100 is 1e-16 under +5% in floating point)
    assert "| 2. COBRA over its own dense mode (Beauty, validation) | +5% / +5% | `--recipe trunk`, 2 seeds: " \
           "+5.0% ± 0.0 / +5.0% ± 0.0 | yes / yes (so far: 2 of 3 seeds) |" in text
    assert "`--recipe trunk`, COBRA mode, 2 seeds: 0.0820 ± 0.0028 / 0.0410 ± 0.0014 | no (-8.9%) / no (-21.2%) |" in text
    assert "58.3, 61.7 min | no |" in text  # the second seed trained past the 60-minute budget
    assert "Beauty 2 of 3, Scientific 0 of 3" in text and text.rstrip().split("\n")[-3].endswith("| not yet |")
    assert "still scoring" not in text and "research/recipe_trunk_s9.json" not in renderer.read
