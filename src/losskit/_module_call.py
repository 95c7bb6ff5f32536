"""Calling a module's ``forward`` directly when ``nn.Module.__call__`` would add nothing.

``module(x)`` runs ``nn.Module._wrapped_call_impl`` and ``_call_impl`` before ``forward``: about
a microsecond of bookkeeping for hooks and ``module.compile()`` (several in a real training step,
where the interpreter's caches are cold). A criterion calls one loss module per term every step,
so on its hot path it checks for those cases itself (a few dictionary truth tests) and calls
``forward`` when none applies. The result is what ``module(...)`` returns: a module with hooks
or compiled in place goes through ``__call__`` as usual. (Under ``torch.jit.trace`` a direct call
records the same operations, without the module's scope name.)
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.modules import module as _module

__all__ = ["GLOBAL_HOOKS", "hook_registries", "plain_call"]

GLOBAL_HOOKS = (
    _module._global_forward_hooks,
    _module._global_forward_pre_hooks,
    _module._global_backward_hooks,
    _module._global_backward_pre_hooks,
)
"""The registries of global module hooks (mutated in place, never rebound, by torch):
``any(GLOBAL_HOOKS)`` says whether one is registered, without a Python frame."""


def hook_registries(module: nn.Module) -> tuple[dict[Any, Any], ...]:
    """``module``'s own forward and backward hook registries (torch mutates them in place).

    Held once, ``any(registries)`` tells whether the module has a hook now without reading the
    module's attributes (each a slow lookup: ``nn.Module`` defines ``__getattr__``).

    Example::

        >>> import torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> registries = hook_registries(layer)
        >>> handle = layer.register_forward_pre_hook(lambda m, i: None)
        >>> any(registries)
        True
    """
    return (
        module._forward_hooks,
        module._forward_pre_hooks,
        module._backward_hooks,
        module._backward_pre_hooks,
    )


def plain_call(module: nn.Module) -> bool:
    """Whether ``module.forward(*args)`` is what ``module(*args)`` would do right now.

    Example::

        >>> import torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> plain_call(layer)
        True
        >>> handle = layer.register_forward_hook(lambda m, i, o: None)
        >>> plain_call(layer)
        False
    """
    return not (
        any(hook_registries(module)) or module._compiled_call_impl is not None or any(GLOBAL_HOOKS)
    )
