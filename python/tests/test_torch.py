"""test_torch.py - simile.torch.Loss in PyTorch training: a small convolutional network trained
a few SGD steps with simile.torch.Loss("multisimilarity") gets the same parameter gradients at
every step as a copy of it trained with the pytorch-metric-learning MultiSimilarityLoss +
MultiSimilarityMiner transcription of bench/torch_cnn_s.py (ms_loss); a loss with parameters
(arcface) trains its weights through the optimiser."""
import importlib.util
import os

import pytest

torch = pytest.importorskip("torch", reason="PyTorch (Debian python3-torch) is not installed: "
                            "simile.torch is not tested")
import simile  # noqa: E402
import simile.torch  # noqa: E402


def transcription(source_dir):
    spec = importlib.util.spec_from_file_location("torch_cnn_s", os.path.join(source_dir, "bench", "torch_cnn_s.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def small_net():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 16))


def test_multisimilarity_gradients_match_pml_transcription(source_dir):
    peer = transcription(source_dir)
    torch.manual_seed(0)
    a = small_net()
    b = small_net()
    b.load_state_dict(a.state_dict())
    crit = simile.torch.Loss("multisimilarity")
    oa = torch.optim.SGD(a.parameters(), lr=0.05)
    ob = torch.optim.SGD(b.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    nonzero = 0
    for step in range(4):
        x = torch.randn(32, 1, 8, 8, generator=g)
        y = torch.arange(32) % 4
        oa.zero_grad(); ob.zero_grad()
        la = crit(torch.nn.functional.normalize(a(x), dim=1), y)
        lb = peer.ms_loss(torch.nn.functional.normalize(b(x), dim=1), y)
        la.backward(); lb.backward()
        assert abs(la.item() - lb.item()) <= 1e-5 * max(1.0, abs(lb.item())), (step, la.item(), lb.item())
        for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert torch.allclose(pa.grad, pb.grad, rtol=1e-4, atol=1e-6), (step, n, (pa.grad - pb.grad).abs().max())
            nonzero += int(pa.grad.abs().sum() > 0)
        oa.step(); ob.step()
    assert nonzero == 4 * len(list(a.parameters()))


def test_loss_with_parameters_trains_them():
    torch.manual_seed(0)
    net = torch.nn.Linear(10, 8)
    crit = simile.torch.Loss("arcface", dim=8, classes=3, scale=16)
    params = list(crit.parameters())
    assert len(params) == 1 and params[0].numel() == 8 * 3
    opt = torch.optim.SGD(list(net.parameters()) + params, lr=0.1)
    x = torch.randn(30, 10)
    y = torch.arange(30) % 3
    before = params[0].detach().clone()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = crit(net(x), y)
        loss.backward()
        assert params[0].grad is not None and params[0].grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert not torch.equal(before, params[0].detach())
    # the C loss computes with the weights the optimiser changed (the same memory)
    v, _ = crit.loss(net(x).detach().numpy(), y.numpy())
    assert abs(v - crit(net(x), y).item()) < 1e-6
    assert losses[-1] < 0.5 * losses[0]


def test_parameter_loss_needs_dim():
    crit = simile.torch.Loss("softmax", classes=3)
    with pytest.raises(simile.Error) as e:
        crit(torch.randn(6, 4), torch.arange(6) % 3)
    assert "dim" in e.value.message
