"""Quality: how well an index finds things and how to make it better (eval, train, the corpus map)."""
