"""Rate cards: schema, loader and the pure pricing engine."""
