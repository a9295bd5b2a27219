"""Multi-label models on timm backbones, chosen by `model.name`: one package each, whose
`__init__.py` declares the model (options at `model.options`, facts) without torch and whose
`model.py` implements it (docs/design.md)."""
