"""Size recipes: data that names real methods and fields, and that methods and views follow."""

import inspect
import subprocess
import sys
from dataclasses import asdict, fields, replace

import pytest
from torch import nn

from selfsight import recipes
from selfsight.api import backbone_config
from selfsight.methods import get_method, list_methods
from selfsight.recipes import (
    BACKBONE_FAMILIES,
    METHOD_RECIPES,
    SIZE_CLASSES,
    VIEW_RECIPES,
    Recipe,
    recipe,
    recipe_rows,
    size_class,
)
from selfsight.views.pipeline import ViewConfig
from selfsight.views.presets import byol_views, multicrop_views, simclr_view

# What each view recipe's settings are passed to.
VIEW_TARGETS = {"simclr": {f.name for f in fields(ViewConfig)},
                "dino": set(inspect.signature(multicrop_views).parameters) - {"size"}}


def unknown_method_keys(entry: Recipe) -> set[str]:
    return set(entry.settings) - {f.name for f in fields(get_method(entry.name).Config)}


def backbone_for(entry: Recipe, size: int):
    vit = entry.backbone == "vit" or get_method(entry.name).requires_vit
    return backbone_config("vit_tiny_patch16_224" if vit else "resnet18", 3, size, None)


def test_recipes_import_no_torch():
    code = ("import sys, selfsight.recipes; "
            "print(sorted(m for m in ('torch', 'lightning', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_size_class_boundary():
    assert [size_class(s) for s in (28, 32, 64, 65, 96, 224)] == ["small"] * 3 + ["large"] * 3


@pytest.mark.parametrize("entry", METHOD_RECIPES, ids=lambda e: f"{e.name}-{e.size}")
def test_method_recipe_names_a_method_and_its_fields(entry):
    assert entry.name in list_methods()
    assert entry.size in SIZE_CLASSES and entry.backbone in (None, *BACKBONE_FAMILIES)
    assert not unknown_method_keys(entry), f"{entry.name}: no such Config fields"
    assert entry.why


def test_a_misspelt_key_fails_the_check_and_the_build(monkeypatch):
    typo = Recipe("simclr", "small", {"temprature": 0.1}, "a typo")
    assert unknown_method_keys(typo) == {"temprature"}
    monkeypatch.setattr(recipes, "METHOD_RECIPES", (typo,))
    with pytest.raises(TypeError, match="temprature"):
        get_method("simclr").default_config(backbone_config("resnet18", 3, 28, None))


@pytest.mark.parametrize("entry", VIEW_RECIPES, ids=lambda e: f"{e.name}-{e.size}")
def test_view_recipe_names_its_arguments(entry):
    assert entry.name in VIEW_TARGETS, f"add '{entry.name}' to VIEW_TARGETS"
    assert entry.size in SIZE_CLASSES and entry.backbone in (None, *BACKBONE_FAMILIES)
    assert entry.why
    assert set(entry.settings) <= VIEW_TARGETS[entry.name]


def test_recipes_that_apply_together_set_different_keys():
    """A family-specific recipe and one for any family never both set a key: order is moot."""
    for first in METHOD_RECIPES:
        for second in METHOD_RECIPES:
            if first is not second and (first.name, first.size) == (second.name, second.size) \
                    and None in (first.backbone, second.backbone):
                assert not set(first.settings) & set(second.settings), first.name


@pytest.mark.parametrize("entry", METHOD_RECIPES, ids=lambda e: f"{e.name}-{e.size}")
def test_method_takes_the_small_recipe_at_28_px_and_its_defaults_at_224(entry):
    cls = get_method(entry.name)
    small, large = backbone_for(entry, 28), backbone_for(entry, 224)
    assert asdict(cls.default_config(small)).items() >= dict(entry.settings).items()
    assert cls.default_config(large) == cls.family_config(large)


def test_small_recipe_applies_to_its_backbone_family_only():
    assert recipe("byol", 28) and recipe("byol", 28, vit=True) == {}
    assert recipe("dino", 28)["out_dim"] != recipe("dino", 28, vit=True)["out_dim"]
    assert recipe("rotnet", 28) == {} and recipe("hierarchical", 28) == {}  # defaults at any size


def test_a_built_method_has_the_recipe_s_heads():
    def projector_width(size: int) -> int:
        cfg = backbone_config("resnet18", 1, size, {"channels": (8, 16, 32, 64)})
        model = get_method("simclr")(backbone=cfg, config=get_method("simclr").default_config(cfg))
        return next(m for m in model.projector.modules() if isinstance(m, nn.Linear)).out_features

    assert projector_width(28) == recipe("simclr", 28)["proj_hidden_dim"] == 512
    assert projector_width(224) == get_method("simclr").Config().proj_hidden_dim


def test_views_follow_the_view_recipes():
    assert simclr_view(224) == ViewConfig(size=224)
    assert simclr_view(28) == replace(ViewConfig(size=28), blur_p=0.0, scale=(0.2, 1.0),
                                      brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    assert [v.blur_p for v in byol_views(28).views] == [0.0, 0.0]
    assert [v.blur_p for v in byol_views(224).views] == [1.0, 0.1]
    dino = get_method("dino")
    assert [v.size for v in dino.default_views(28).views] == [28, 28]
    assert dino.default_views(28).views[0].scale == (0.25, 1.0)
    assert [v.size for v in dino.default_views(224).views] == [224] * 2 + [96] * 6
    # A ViT trains DINO's global crops at 4/7 of a small image (16 tokens instead of 49).
    vit = backbone_config("vit_tiny_patch16_224", 1, 28, None)
    assert [v.size for v in dino.views_for(vit).views] == [16, 16]
    assert dino.views_for(backbone_config("resnet18", 1, 28, None)) == dino.default_views(28)


def test_recipe_rows_cover_every_recipe():
    rows = recipe_rows()
    assert len(rows) == len(METHOD_RECIPES) + len(VIEW_RECIPES)
    for entry in (*METHOD_RECIPES, *VIEW_RECIPES):
        name = entry.name if entry in METHOD_RECIPES else f"{entry.name} views"
        matches = [row for row in rows if row[0] == name and row[1].startswith(entry.size)
                   and row[3] == entry.why]
        assert len(matches) == 1, entry
        assert all(f"{key}={value}" in matches[0][2] for key, value in entry.settings.items())
