"""Search spaces: supernets with shared weights, grammars (NSC), and benchmark tables."""
