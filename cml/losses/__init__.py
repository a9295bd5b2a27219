"""Multi-label losses, chosen by `train.loss`: one package each, whose `__init__.py` declares the
loss (options at `train.<section>`, its reduction over the batch) without torch and whose
`loss.py` implements it on the masked targets of `_masked.py`."""
