"""Test-session settings shared by tests/ and the doctests in src/."""

import torch

# The suite runs many tiny models; one intra-op thread is faster for them and does not collapse
# when the machine's two cores are shared with other work (OpenMP threads spin-wait).
torch.set_num_threads(1)
