"""The multi-task option of the sentiment training (``train_sentiment.py --germeval``): the
auxiliary loss is the sum of the chosen GermEval tasks, and bad options stop before any work."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stimmung.models.train_sentiment import AUX_TASKS, AuxiliaryTask, main


def task(tasks: tuple[str, ...]) -> AuxiliaryTask:
    return AuxiliaryTask(states=[None, None, None], sentiment=torch.tensor([0, 2, 1]),
                         relevance=torch.tensor([1.0, 0.0, 1.0]),
                         aspects=torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), tasks=tasks)


def test_the_auxiliary_loss_sums_exactly_the_chosen_tasks():
    torch.manual_seed(0)
    logits = torch.randn(2, 3 + 1 + 2)
    rows = [2, 0]
    aux = task(AUX_TASKS)
    parts = {"sentiment": F.cross_entropy(logits[:, :3], torch.tensor([1, 0])),
             "relevance": F.binary_cross_entropy_with_logits(logits[:, 3], torch.tensor([1.0, 1.0])),
             "aspects": F.binary_cross_entropy_with_logits(logits[:, 4:], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))}
    assert aux.outputs == 6
    assert aux.loss(logits, rows).item() == pytest.approx(sum(parts.values()).item(), rel=1e-6)
    for name in AUX_TASKS:
        assert task((name,)).loss(logits, rows).item() == pytest.approx(parts[name].item(), rel=1e-6)
    assert task(("relevance", "sentiment")).loss(logits, rows).item() == pytest.approx(
        (parts["relevance"] + parts["sentiment"]).item(), rel=1e-6)


def test_confident_right_answers_cost_almost_nothing_and_wrong_ones_a_lot():
    right = torch.tensor([[-9.0, -9.0, 9.0, -9.0, -9.0, -9.0], [9.0, -9.0, -9.0, 9.0, 9.0, -9.0]])
    aux = task(AUX_TASKS)
    assert aux.loss(right, [1, 0]).item() < 1e-3
    assert aux.loss(-right, [1, 0]).item() > 10


def test_unknown_tasks_and_a_missing_file_stop_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--umsab", str(tmp_path), "--out", str(tmp_path / "x"), "--aux-tasks", "relevance,mood"])
    assert stop.value.code == 2 and "unknown ['mood']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["--umsab", str(tmp_path), "--out", str(tmp_path / "x"), "--germeval", str(tmp_path / "none.tsv")])
    assert stop.value.code == 2 and "no such file" in capsys.readouterr().err


def test_heads_are_fitted_only_on_germeval_documents_the_layers_did_not_see():
    from stimmung.models.datasets import GermEvalDoc
    from stimmung.models.evaluate import germeval_part, germeval_tune_half
    from stimmung.models.train_heads import germeval_fitting_rows

    docs = [GermEvalDoc(str(i), f"Die Bahn ist heute {i} Minuten zu spät", True, "negative") for i in range(400)]
    tune = [germeval_part(d) == "tune" for d in docs]
    layers = [germeval_tune_half(d) == "layers" for d in docs]
    assert 150 < sum(tune) < 250 and 150 < sum(layers) < 250  # both cuts halve, independently
    assert 50 < sum(t and s for t, s in zip(tune, layers)) < 150

    assert germeval_fitting_rows(docs, "none").tolist() == tune
    heads_rows = germeval_fitting_rows(docs, "layers").tolist()
    assert heads_rows == [t and not s for t, s in zip(tune, layers)]
    assert not any(h and germeval_part(d) == "heldout" for h, d in zip(heads_rows, docs))
    with pytest.raises(SystemExit, match="--aux-rows layers"):
        germeval_fitting_rows(docs, "all")
    # layers trained on the other half leave the 'layers' half to the heads
    assert germeval_fitting_rows(docs, "heads").tolist() == [t and s for t, s in zip(tune, layers)]
    # cross-fitted pools (each document pooled by layers that did not see it) free all of tune
    assert germeval_fitting_rows(docs, "all", cross_fitted=True).tolist() == tune


def test_cross_fitted_pools_come_from_the_layers_that_did_not_see_the_row():
    import numpy as np

    from stimmung.models.train_heads import cross_fitted

    halves = np.array(["layers", "", "heads", "layers", "heads", ""])
    full = np.zeros((6, 2, 3))
    # pools that layers trained on half h give the rows of the other half, in row order
    unseen = {"layers": np.stack([np.full((2, 3), 1.0), np.full((2, 3), 2.0)]),  # rows 2, 4 ('heads' half)
              "heads": np.stack([np.full((2, 3), 3.0), np.full((2, 3), 4.0)])}  # rows 0, 3 ('layers' half)
    out = cross_fitted(full, halves, unseen)
    assert out[:, 0, 0].tolist() == [3.0, 0.0, 1.0, 4.0, 2.0, 0.0]
    assert not full.any()  # the input is left alone
    with pytest.raises(ValueError, match="3 pools for the 2 tune rows of half 'heads'"):
        cross_fitted(full, halves, {**unseen, "layers": np.zeros((3, 2, 3))})


def test_cross_fit_files_must_be_the_same_recipe_on_one_half_each():
    from stimmung.models.train_heads import check_cross_fit_files

    main_meta = {"germeval_tune_rows": "all", "base": "e5-abc", "top_layers": "4", "max_tokens": "64"}
    halves = {h: {**main_meta, "germeval_tune_rows": h} for h in ("layers", "heads")}
    check_cross_fit_files(main_meta, halves)  # accepted
    with pytest.raises(SystemExit, match="for layers trained on all of GermEval tune"):
        check_cross_fit_files({**main_meta, "germeval_tune_rows": "none"}, halves)
    with pytest.raises(SystemExit, match="heads file: trained on GermEval tune rows 'layers', expected 'heads'"):
        check_cross_fit_files(main_meta, {**halves, "heads": halves["layers"]})
    with pytest.raises(SystemExit, match="layers file: top_layers '12' differs"):
        check_cross_fit_files(main_meta, {**halves, "layers": {**halves["layers"], "top_layers": "12"}})


def test_cv_fold_subsets_and_top_layers_are_checked_before_any_work(tmp_path, capsys):
    base = ["--umsab", str(tmp_path), "--out", str(tmp_path / "x")]
    for extra, message in ((["--cv-folds", "1,2"], "needs --cv K"), (["--cv", "5", "--cv-folds", "0,6"], "within 1..K"),
                           (["--cv", "5", "--cv-folds", "one"], "not a comma-separated list"),
                           (["--top-layers", "13"], "outside 1..12")):
        with pytest.raises(SystemExit) as stop:
            main(base + extra)
        assert stop.value.code == 2 and message in capsys.readouterr().err, extra
