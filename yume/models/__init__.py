"""Neural networks: the Wan/Yume DiT, history packing and TSCM, text encoding."""
