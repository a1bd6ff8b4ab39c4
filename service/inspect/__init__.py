"""Looking without storing: frame check, compare at every level, the model card, live figures."""
