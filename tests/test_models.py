"""Generators and the PatchGAN: shapes at 32 and 256, any input size, receptive field, init."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from colorgan.models import (
    PatchDiscriminator,
    PretrainedWeightsUnavailable,
    ResNet18UNet,
    UNetGenerator,
    build_discriminator,
    build_generator,
    patchgan_receptive_field,
    resnet_unet,
    set_stochastic_inference,
)
from colorgan.models.layers import cat_channels


@pytest.mark.parametrize("size,depth", [(32, 5), (256, 8)])
def test_unet_depth_follows_image_size(size, depth):
    g = UNetGenerator(image_size=size, ngf=8)
    out = g(torch.randn(2, 1, size, size))
    assert g.depth == depth and out.shape == (2, 2, size, size)
    assert out.abs().max() <= 1.0  # tanh: ab stays in the normalised range


def test_unet_has_dropout_only_in_inner_decoder_blocks():
    g = UNetGenerator(image_size=256, ngf=8)
    with_dropout = [i for i, block in enumerate(g.decoders) if any(isinstance(m, nn.Dropout) for m in block.modules())]
    assert with_dropout == [4, 5, 6]  # the three blocks above the 1 x 1 bottleneck, as in unet_256
    g32 = UNetGenerator(image_size=32, ngf=8)
    assert any(isinstance(m, nn.Dropout) for m in g32.modules())


@pytest.mark.parametrize("shape", [(1, 1), (33, 517), (300, 40), (7, 7)])
def test_generators_take_any_size(shape):
    for g in (UNetGenerator(image_size=32, ngf=8).eval(), ResNet18UNet(image_size=32).eval()):
        assert g(torch.randn(1, 1, *shape)).shape == (1, 2, *shape)


def test_resnet18_unet_at_256():
    assert ResNet18UNet(image_size=256)(torch.randn(2, 1, 256, 256)).shape == (2, 2, 256, 256)


def test_noise_channels_are_random_in_training_and_stochastic_inference_only():
    g = UNetGenerator(image_size=32, ngf=8, dropout=0.0, noise_channels=2)
    L = torch.randn(1, 1, 32, 32)
    assert g.encoders[0].in_channels == 3
    assert not torch.equal(g(L), g(L))  # train mode: a new z each call
    g.eval()
    assert torch.equal(g(L), g(L))  # eval: z = 0
    set_stochastic_inference(g, True)
    assert not torch.equal(g(L), g(L))
    deterministic = UNetGenerator(image_size=32, ngf=8, dropout=0.0).eval()
    assert torch.equal(deterministic(L), deterministic(L))


@pytest.mark.parametrize("size", [32, 256])
def test_patchgan_gives_one_logit_per_patch(size):
    d = PatchDiscriminator(ndf=8, n_layers=2 if size == 32 else 3)
    out = d(torch.randn(2, 1, size, size), torch.randn(2, 2, size, size))
    assert out.shape[:2] == (2, 1) and out.shape[-1] > 1  # a map of decisions, not one number


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_receptive_field_is_what_the_docstring_says(n_layers):
    d = PatchDiscriminator(ndf=4, n_layers=n_layers, norm="none")
    L = torch.randn(1, 1, 128, 128, requires_grad=True)
    out = d(L, torch.zeros(1, 2, 128, 128))
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = L.grad[0, 0].abs().sum(dim=1).nonzero()
    assert rows.max() - rows.min() + 1 == patchgan_receptive_field(n_layers) == {1: 16, 2: 34, 3: 70}[n_layers]


def test_pix2pix_init_is_normal_0_02():
    w = torch.cat([m.weight.flatten() for m in UNetGenerator(image_size=256).modules() if isinstance(m, nn.Conv2d)])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3


def test_pretrained_stem_sums_rgb_filters(tmp_path: Path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    g = ResNet18UNet(pretrained=True, weights_path=str(path))
    assert torch.allclose(g.stem[0].weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(g.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)


def test_pretrained_offline_fails_with_the_fix(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(
        resnet_unet.torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline
    )
    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained=false") as err:
        ResNet18UNet(pretrained=True)
    assert str(tmp_path) in str(err.value)


def test_unknown_generator_name_lists_the_choices():
    with pytest.raises(ValueError, match="resnet18_unet"):
        build_generator({"name": "unet3d"})


def test_channels_last_cat_matches_torch_cat_and_keeps_grads_dense():
    a = torch.randn(2, 3, 5, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(2, 5, 5, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = cat_channels(a, b)
    assert torch.equal(out, torch.cat([a, b], dim=1)) and out.is_contiguous(memory_format=torch.channels_last)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    assert torch.equal(a.grad, weights[:, :3]) and torch.equal(b.grad, weights[:, 3:])
    assert a.grad.is_contiguous(memory_format=torch.channels_last)
    assert b.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["unet", "resnet18_unet"])
def test_channels_last_generator_and_discriminator_match_nchw(name):
    torch.manual_seed(0)
    G = build_generator({"name": name, "image_size": 32, "dropout": 0.0}).double()
    D = build_discriminator({"name": "patchgan"}).double()
    L, ab = torch.randn(2, 1, 32, 32, dtype=torch.float64), torch.randn(2, 2, 32, 32, dtype=torch.float64)

    def loss_and_grads(memory_format):
        for net in (G, D):
            net.to(memory_format=memory_format).zero_grad()
        fake = G(L.contiguous(memory_format=memory_format))
        loss = D(L.contiguous(memory_format=memory_format), fake).mean() + (fake - ab).abs().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in [*G.parameters(), *D.parameters()]]

    loss_nchw, grads_nchw = loss_and_grads(torch.contiguous_format)
    loss_cl, grads_cl = loss_and_grads(torch.channels_last)
    torch.testing.assert_close(loss_cl, loss_nchw)
    for g_cl, g_nchw in zip(grads_cl, grads_nchw, strict=True):
        torch.testing.assert_close(g_cl, g_nchw)


def test_a_noise_vector_is_one_z_per_image_tiled_over_it():
    from colorgan.models.layers import NoiseChannels

    L = torch.zeros(3, 1, 8, 8)
    z = NoiseChannels(4, "vector")(L)[:, 1:]
    assert z.shape == (3, 4, 8, 8)
    assert torch.equal(z, z[:, :, :1, :1].expand_as(z))  # constant over the image
    assert not torch.equal(z[0], z[1])  # a new z per image
    pixel = NoiseChannels(4, "pixel")(L)[:, 1:]
    assert not torch.equal(pixel, pixel[:, :, :1, :1].expand_as(pixel))
