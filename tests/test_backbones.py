"""ResNet-18/34/50 in plain torch with torchvision's state_dict key names, loading a user's
checkpoint (weights-only), frozen BN and frozen stem for detection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasfpn.cli import main
from nasfpn.proxy.backbones import WeightsError, new_backbone, read_weights

KEYS_FILE = Path(__file__).parent / "data" / "torchvision_resnet_keys.txt"


def torchvision_keys() -> dict[str, list[str]]:
    """The key lists kept in tests/data (torchvision's own names, fc included)."""
    out: dict[str, list[str]] = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("["):
            out[line.strip("[]")] = current = []
        else:
            current.append(line)
    return out


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_state_dict_keys_are_torchvisions(name):
    expected = [k for k in torchvision_keys()[name] if not k.startswith("fc.")]
    assert list(new_backbone(name).state_dict()) == expected


@pytest.mark.parametrize("name, channels", [("resnet18", [128, 256, 512]), ("resnet50", [512, 1024, 2048])])
def test_outputs_are_c3_to_c5(name, channels):
    net = new_backbone(name).eval()
    assert net.out_channels == channels
    with torch.no_grad():
        outs = net(torch.zeros(1, 3, 96, 128))
    assert [tuple(o.shape) for o in outs] == [(1, c, 96 // s, 128 // s) for c, s in zip(channels, (8, 16, 32))]


def test_a_saved_state_dict_loads_back_strict_with_fc_and_without_num_batches_tracked(tmp_path):
    torch.manual_seed(0)
    net = new_backbone("resnet18")
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)  # an ImageNet head: ignored
    torch.save(state, tmp_path / "r18.pth")
    loaded = read_weights("resnet18", tmp_path / "r18.pth")
    again = new_backbone("resnet18")
    again.load_state_dict(loaded, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")  # a training checkpoint
    assert read_weights("resnet18", tmp_path / "ckpt.pth").keys() == net.state_dict().keys()


def _save(tmp_path, edit) -> Path:
    state = dict(new_backbone("resnet18").state_dict())
    edit(state)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update({"layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)}),
     "'layer2.0.conv1.weight' has shape (128, 64, 1, 1), resnet18 needs (128, 64, 3, 3)"),
    (lambda s: s.pop("layer2.0.downsample.0.weight"), "missing key 'layer2.0.downsample.0.weight'"),
    (lambda s: s.update({"layer5.0.conv1.weight": torch.zeros(1)}), "unexpected key 'layer5.0.conv1.weight'"),
])
def test_a_wrong_checkpoint_names_the_key(tmp_path, edit, message):
    path = _save(tmp_path, edit)
    with pytest.raises(WeightsError) as info:
        read_weights("resnet18", path)
    assert f"backbone_weights {path}: {message}" in str(info.value)


def test_resnet50_weights_for_resnet18_and_foreign_files_are_one_line_exit_2(tmp_path, capsys):
    torch.save(new_backbone("resnet34").state_dict(), tmp_path / "r34.pth")
    with pytest.raises(WeightsError, match="unexpected key 'layer1.2.conv1.weight'"):
        read_weights("resnet18", tmp_path / "r34.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="not a weights-only torch file"):
        read_weights("resnet18", tmp_path / "junk.pth")
    rc = main(["train", "--neck", "fpn", "--budget", "smoke", "--set", "backbone=resnet18",
               "--set", f"backbone_weights={tmp_path / 'r34.pth'}", "--out", str(tmp_path / "o"),
               "--cache", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "unexpected key" in err and "Traceback" not in err


def test_fine_tuning_keeps_bn_and_the_stem_frozen():
    from nasfpn.proxy.loop import _parameter_groups
    from nasfpn.proxy.model import Detector, plain_laterals

    net = new_backbone("resnet18")
    detector = Detector(plain_laterals(), 3, 16, 1, backbone=net)
    groups = _parameter_groups(detector, 1e-3, train_backbone=True, backbone_lr_scale=0.1)
    detector.train()
    trained = {id(p) for g in groups for p in g["params"]}
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not any(id(p) in trained for p in [*net.conv1.parameters(), *net.bn1.parameters(),
                                               *net.layer1.parameters(), *net.layer2[0].bn1.parameters()])
    assert id(net.layer2[0].conv1.weight) in trained and id(net.layer4[1].conv2.weight) in trained
    assert groups[1]["lr"] == pytest.approx(1e-4)


def test_given_weights_no_pretraining_runs(tmp_path):
    import nasfpn
    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.session import ProxySession
    from nasfpn.proxy.train import run_trial

    torch.manual_seed(1)
    torch.save(new_backbone("resnet18").state_dict(), tmp_path / "r18.pth")
    budget = read_budget("smoke", ["backbone=resnet18", f"backbone_weights={tmp_path / 'r18.pth'}", "steps=2"])
    session = ProxySession.open("synthetic", budget, cache=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("backbone-*"))
    assert [f.shape[1] for f in session.train_feats] == [128, 256, 512]
    m = run_trial(nasfpn.load("fpn"), session, progress=False, measure=False)
    assert m["budget_config"]["backbone"] == "resnet18" and 0 <= m["AP"] <= 1
