"""Training (torch) and the synthetic scenes it learns from; the network itself is in families/."""
