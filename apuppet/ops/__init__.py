"""Operations: install helpers, the NAT doctor, TLS, logs, audit and metrics."""
