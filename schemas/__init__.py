"""Field catalog and message models: the contracts every other package reads."""
