"""split-files: PRS's task id lists in `scenario.split_dir`, in `scenario.task_order`
(cml/protocols/split_file_reader.py reads them; docs/protocols.md)."""

from __future__ import annotations

from cml.core.registry import Protocol


def build(cfg, data):
    from cml.protocols.split_file_reader import split_file_steps

    s = cfg.scenario
    return split_file_steps(data, s.split_dir, s.task_order, s.labels)


DECLARATION = Protocol(build=build, name="split-files", requires_keys=("scenario.split_dir",), help="PRS split files")
