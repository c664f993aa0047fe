"""The patch VAE of seed 000 (Methods, "Encoding of macro configurations") as a torch module.

Encoder: one 1-D convolution across the 14 lipid channels (kernel 1: at each of the
25 grid points the channels are mixed), then fully connected layers of 700, 350,
175, 80, 40 and 20 nodes, each followed by batch normalisation, ReLU and 20%
dropout, and two linear heads for the mean and log-variance of the
``latent_dim``-dimensional (15 in the paper) latent distribution. Decoder: fully
connected layers of 20, 40, 80 and 175 nodes (batch norm, ReLU, dropout) and a
linear output of 350 = 5×5×14 nodes; dropout is left out of the decoder (it only
blurs reconstructions). Loss: mean-squared reconstruction error plus the KL
divergence of the latent distribution from N(0, I), weighted as the negative ELBO of
a Gaussian decoder with noise ``RECON_SIGMA`` (10% of a channel's dynamic range):
with unit noise the KL term collapses every latent onto the prior, since the data
vary by only a few per cent of their range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mummi.sampler.architecture import JsonArchitecture

ENCODER_WIDTHS: tuple[int, ...] = (700, 350, 175, 80, 40, 20)
DECODER_WIDTHS: tuple[int, ...] = (20, 40, 80, 175)
RECON_SIGMA = 0.1


@dataclass(frozen=True)
class Architecture(JsonArchitecture):
    """Everything needed to rebuild the module (saved in the model's JSON manifest)."""

    grid: int = 5
    channels: int = 14
    latent_dim: int = 15
    conv_channels: int = 14
    encoder_widths: tuple[int, ...] = field(default=ENCODER_WIDTHS)
    decoder_widths: tuple[int, ...] = field(default=DECODER_WIDTHS)
    dropout: float = 0.2
    decoder_dropout: float = 0.0

    @property
    def inputs(self) -> int:
        return self.grid * self.grid * self.channels


def _block(n_in: int, n_out: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(), nn.Dropout(dropout)]


class PatchVAE(nn.Module):
    """Input (batch, grid, grid, channels) normalised patches; see the module docstring."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.conv = nn.Conv1d(arch.channels, arch.conv_channels, kernel_size=1)
        layers: list[nn.Module] = []
        width = arch.conv_channels * arch.grid * arch.grid
        for w in arch.encoder_widths:
            layers += _block(width, w, arch.dropout)
            width = w
        self.encoder = nn.Sequential(*layers)
        self.mean = nn.Linear(width, arch.latent_dim)
        self.log_var = nn.Linear(width, arch.latent_dim)
        layers, width = [], arch.latent_dim
        for w in arch.decoder_widths:
            layers += _block(width, w, arch.decoder_dropout)
            width = w
        layers.append(nn.Linear(width, arch.inputs))
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of the latent distribution of patches ``x`` (batch, grid, grid, channels)."""
        b = x.shape[0]
        h = x.reshape(b, -1, self.arch.channels).transpose(1, 2)  # (batch, channels, grid points)
        h = torch.relu(self.conv(h)).reshape(b, -1)
        h = self.encoder(h)
        return self.mean(h), self.log_var(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(-1, self.arch.grid, self.arch.grid, self.arch.channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, mean, log-variance); samples the latent in training mode, uses the mean in eval mode."""
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var) if self.training else mu
        return self.decode(z), mu, log_var


def kl_weight_for(sigma: float, inputs: int) -> float:
    """The KL weight that makes ``MSE + w·KL`` proportional to the negative ELBO of a Gaussian decoder with noise
    standard deviation ``sigma`` (in normalised units): ``SSE / (2σ²) + KL`` divided by ``inputs / (2σ²)``."""
    return 2.0 * sigma * sigma / inputs


def vae_loss(
    x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, kl_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE + kl_weight·KL, MSE): MSE is the mean over patches and pixels; KL, the divergence of the latent
    distribution from N(0, I), is summed over latent dimensions and averaged over patches."""
    mse = torch.mean((recon - x) ** 2)
    kl = -0.5 * torch.sum(1 + log_var - mu**2 - torch.exp(log_var), dim=1).mean()
    return mse + kl_weight * kl, mse
