"""Config bases: a value the photo data sets or the GAN experiments share is written once, in its base file.

conf/data/base/photos.yaml holds what data=folder, data=imagenette and data=shards share (the resize before the
crop, the loaders), conf/data/base/splits.yaml how data=folder and data=imagenette split a folder, and
conf/experiment/base/gan_selection.yaml how experiment=cifar_gan and experiment=photos_gan pick the best epoch.
A concrete file that set one of those keys again would say it twice (and, listed before its base, lose it).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

from tests.conftest import CONF

PHOTOS_BASE = "base/photos"
SPLITS_BASE = "base/splits"
GAN_BASE = "base/gan_selection"
BASES = {  # base (relative to its group) -> the concrete configs of that group that list it
    ("data", PHOTOS_BASE): ("folder", "imagenette", "shards"),
    ("data", SPLITS_BASE): ("folder", "imagenette"),
    ("experiment", GAN_BASE): ("cifar_gan", "photos_gan"),
}


def read(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of a nested mapping (the defaults list left out)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if key == "defaults":
            continue
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def compose_train(overrides: list[str], conf: Path = CONF) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def composed(group: str, name: str, conf: Path = CONF) -> dict[str, Any]:
    """The leaves of ``train.yaml`` composed with ``group=name`` where a base of ``group`` writes: under ``data``
    for the data bases, at the top for the experiment bases (``# @package _global_``)."""
    cfg = compose_train([f"{group}={name}"], conf)
    return leaves(OmegaConf.to_container(cfg.data if group == "data" else cfg))  # type: ignore[arg-type]


@pytest.mark.parametrize(("group", "base"), list(BASES))
def test_concrete_configs_leave_the_base_keys_to_the_base(group, base):
    owned = leaves(read(CONF / group / f"{base}.yaml"))
    assert owned, f"conf/{group}/{base}.yaml sets nothing"
    for name in BASES[group, base]:
        text = read(CONF / group / f"{name}.yaml")
        assert not set(leaves(text)) & set(owned), f"conf/{group}/{name}.yaml sets again what {base} owns"
        defaults = [str(entry) for entry in text["defaults"]]
        entry = f"{base}@_here_" if group == "data" else base
        assert entry in defaults, f"conf/{group}/{name}.yaml does not list {entry}"
        if "_self_" in defaults:  # _self_ first keeps the file's own keys first; the base may not be overridden
            assert defaults.index("_self_") < defaults.index(entry)


@pytest.mark.parametrize(("group", "base"), list(BASES))
def test_composed_configs_take_the_base_values(group, base):
    owned = leaves(read(CONF / group / f"{base}.yaml"))
    for name in BASES[group, base]:
        found = composed(group, name)
        assert {key: found.get(key, "<missing>") for key in owned} == owned, f"{group}={name}"


@pytest.mark.parametrize(("group", "base"), list(BASES))
def test_a_value_changed_in_the_base_reaches_every_config_that_lists_it(tmp_path, group, base):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    path = conf / group / f"{base}.yaml"
    changed = {key: f"changed-{key}" for key in leaves(read(path))}
    tree: dict[str, Any] = {}
    for dotted, value in changed.items():
        *parents, last = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    header = "# @package _global_\n" if path.read_text().startswith("# @package _global_") else ""
    path.write_text(header + yaml.safe_dump(tree))
    try:
        for name in BASES[group, base]:
            found = composed(group, name, conf)
            assert {key: found.get(key) for key in changed} == changed, f"{group}={name}"
    finally:
        GlobalHydra.instance().clear()


def test_the_photo_data_sets_share_loader_and_split_settings():
    composed = {name: compose_train([f"data={name}"]).data for name in ("folder", "imagenette", "shards")}
    loader = ("load_size", "batch_size", "eval_batch_size", "num_workers", "pin_memory", "compile_lab")
    assert len({tuple(data[key] for key in loader) for data in composed.values()}) == 1
    splits = ("val_fraction", "test_fraction", "split_seed", "on_bad_image")
    assert tuple(composed["folder"][key] for key in splits) == tuple(composed["imagenette"][key] for key in splits)
    assert not set(splits) & set(composed["shards"])  # prepared shards carry their splits; the module takes none


def test_both_gan_stages_pick_the_best_epoch_the_same_way():
    for experiment in ("cifar_gan", "photos_gan"):
        cfg = compose_train([f"experiment={experiment}"])
        assert (cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.guard) == (
            "val/realism",
            "val/psnr_gain",
        )
        assert cfg.optimized_metric == "val/realism"
    assert compose_train(["experiment=cifar_pretrain"]).callbacks.model_checkpoint.monitor == "val/l1_ab"


@pytest.mark.parametrize(("group", "choices"), [("data", "cifar10 folder imagenette shards"), ("experiment", None)])
def test_bases_are_not_offered_as_choices(group, choices):
    with pytest.raises(MissingConfigException) as info:
        compose_train([f"{group}=no_such_choice"])
    options = str(info.value).split(f"Available options in '{group}':\n")[1].split("Config search path")[0]
    listed = [line.strip() for line in options.splitlines() if line.startswith("\t")]
    expected = choices.split() if choices else sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert sorted(listed) == sorted(expected)
    assert not any("base" in choice for choice in listed)
