"""Running apuppet on a host: installation helpers, the NAT doctor, TLS certificates."""
