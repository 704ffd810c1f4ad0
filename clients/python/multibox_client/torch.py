"""PyTorch integration: RemoteMultiBoxLoss, an nn.Module computing the loss on the service.

forward(loc, conf, anchors, targets) sends the detached predictions to the service inside a
torch.autograd.Function and returns the loss as a 0-dim tensor on loc's device; backward hands
autograd the service's gradients (scaled by the incoming gradient), so loss.backward() works
as with a local loss. Tensors of any float dtype are accepted (float16 and bfloat16 travel as
such on the OIP path); tensors on another device are copied to the CPU for the request and
the gradients are moved back. This is the only module of the package that imports torch.
"""

import torch
from torch.autograd.function import once_differentiable

from .client import Client

__all__ = ["RemoteMultiBoxLoss"]


def _call_service(module, loc, conf, anchors, targets, want_grad):
    res = module.client.loss(loc, conf, anchors, targets,
                             gradients=module.gradients if want_grad else False, **module.config)
    module.last_result = res
    return res, torch.tensor(res.loss, dtype=torch.promote_types(loc.dtype, conf.dtype), device=loc.device)


class _RemoteMultiBoxLossFn(torch.autograd.Function):
    """Autograd bridge: forward asks the service, backward returns its gradients."""

    @staticmethod
    def forward(ctx, loc, conf, module, anchors, targets):
        res, loss = _call_service(module, loc, conf, anchors, targets, True)
        ctx.grad_loc = torch.from_numpy(res.grad_loc).to(device=loc.device, dtype=loc.dtype)
        ctx.grad_conf = torch.from_numpy(res.grad_conf).to(device=conf.device, dtype=conf.dtype)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grad_loc = grad_conf = None
        if ctx.needs_input_grad[0]:
            grad_loc = ctx.grad_loc * grad_output.to(ctx.grad_loc.dtype)
        if ctx.needs_input_grad[1]:
            grad_conf = ctx.grad_conf * grad_output.to(ctx.grad_conf.dtype)
        return grad_loc, grad_conf, None, None, None


class RemoteMultiBoxLoss(torch.nn.Module):
    """The SSD MultiBox loss computed by a multibox service, usable like a local loss.

    url: the service's base URL, or an existing multibox_client.Client.
    timeout, token, protocol, gradients, upload, gradient_dtype, max_retries: as for Client
        (used only when url is a string; gradients "sparse" or "dense").
    config: the loss configuration, the keys of the semantics table (e.g. bipartite="per_gt").

    forward(loc [B,A,4], conf [B,A,C], anchors ([A,4] tensor or preset name), targets (list of
    {"boxes", "labels"(, "difficult")})) returns the scalar loss; the full answer (parts,
    counts, per-image values) is kept in self.last_result. Raises MultiboxError as Client.
    """

    def __init__(self, url, timeout=60.0, token=None, protocol="oip", gradients="sparse",
                 upload="auto", gradient_dtype="fp32", max_retries=5, **config):
        super().__init__()
        if isinstance(url, Client):
            self.client = url
        else:
            self.client = Client(url, timeout=timeout, token=token, protocol=protocol,
                                 gradients=gradients, upload=upload, gradient_dtype=gradient_dtype,
                                 max_retries=max_retries)
        self.gradients = "sparse" if gradients == "sparse" else "dense"
        self.config = dict(config)
        self.last_result = None

    def forward(self, loc, conf, anchors, targets):
        if torch.is_grad_enabled() and (loc.requires_grad or conf.requires_grad):
            return _RemoteMultiBoxLossFn.apply(loc, conf, self, anchors, targets)
        # Nothing will call backward (evaluation, torch.no_grad()): skip the gradients.
        return _call_service(self, loc, conf, anchors, targets, False)[1]

    def extra_repr(self):
        return "url=%r, %s" % (self.client.url, ", ".join("%s=%r" % kv for kv in self.config.items()))
