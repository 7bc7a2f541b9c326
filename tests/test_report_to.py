"""The recipe's report_to reaches the trainers' arguments, off by default."""

from stylealign.config import load_recipe
from stylealign.train.trainers import _common_args


def test_report_to_is_off_by_default_and_passes_through(tmp_path, monkeypatch):
    import stylealign.config

    # the recipe refuses an integration whose package is missing; stand in an installed one for each
    monkeypatch.setitem(stylealign.config._REPORT_PACKAGES, "tensorboard", "json")
    monkeypatch.setitem(stylealign.config._REPORT_PACKAGES, "wandb", "json")
    assert _common_args(load_recipe(None).sft, load_recipe(None), tmp_path, False)["report_to"] == "none"
    recipe = load_recipe("smollm2-135m_qlora_cpu", {"report_to": "tensorboard, wandb"})
    assert _common_args(recipe.dpo, recipe, tmp_path, False)["report_to"] == ["tensorboard", "wandb"]
