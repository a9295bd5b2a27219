"""Continual strategies (`strategy.name`): the training template (`_base.py`) and the modules it is
split into by concern; `finetune.py` and `joint.py` declare the strategies."""
