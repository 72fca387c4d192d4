"""torch.py - simile's losses in PyTorch training (import simile.torch needs torch):
    crit = simile.torch.Loss("multisimilarity")
    loss = crit(model(x), y); loss.backward()
The forward pass computes the loss and its gradient in C (sm_loss_compute) on the embeddings
(moved to the CPU as float32); backward returns that gradient times the incoming one.  A loss
with trainable parameters (softmax, focal, arcface, cosface, proxyanchor; classes=C) needs dim:
its parameters are then one torch Parameter sharing the C block's memory (crit.parameters():
give them to the optimiser)."""
import torch

from . import losses as _losses
from . import _lib


class _LossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emb, labels, params, loss):
        e = emb.detach().to("cpu", torch.float32).contiguous().numpy()
        y = labels.detach().to("cpu").numpy()
        if params is not None:
            loss.zero_param_grads()
        value, grad = loss(e, y)
        pgrad = None
        if params is not None:
            pgrad = torch.from_numpy(loss.param_grads.copy()).to(params.device, params.dtype)
        ctx.save_for_backward(torch.from_numpy(grad).to(emb.device, emb.dtype),
                              pgrad if pgrad is not None else torch.empty(0))
        ctx.has_params = params is not None
        return torch.tensor(value, dtype=emb.dtype, device=emb.device)

    @staticmethod
    def backward(ctx, grad_out):
        g, pg = ctx.saved_tensors
        return g * grad_out, None, (pg * grad_out if ctx.has_params else None), None


class Loss(torch.nn.Module):
    """A simile loss by name with its options (keyword arguments, as simile.losses.Loss) as a
    torch module: forward(embeddings (n, d), labels (n)) -> scalar loss tensor."""

    def __init__(self, name, dim=None, seed=1, **options):
        super().__init__()
        self.loss = _losses.Loss(name, dim=dim, seed=seed, **options)
        self.weight = None
        if dim is not None and self.loss.params is not None:
            self.weight = torch.nn.Parameter(torch.from_numpy(self.loss.params))

    def forward(self, emb, labels):
        if self.loss._h is None:
            self.loss._create(int(emb.shape[1]))
        if self.weight is None and self.loss.params is not None:
            raise _lib.error(1, f"loss '{self.loss.name}' has trainable parameters: create it with "
                             "dim=D so that they are a Parameter before the optimiser is made")
        if self.weight is not None and self.weight.data_ptr() != self.loss.params.ctypes.data:
            self.loss.params[:] = self.weight.detach().cpu().numpy()  # a moved or replaced tensor
        return _LossFunction.apply(emb, labels, self.weight, self.loss)

    def extra_repr(self):
        return f"{self.loss.name!r}, {self.loss.options}"
