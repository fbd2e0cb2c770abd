"""Debian 12's python3-torch 1.13 on Python 3.11: one line of torch that Python 3.11
refuses, fixed at import time for the Python suite.

torch 1.13's `torch/distributed/_shard/sharded_tensor/metadata.py` declares
`tensor_properties: TensorProperties = field(default=TensorProperties())`; Python
3.11's dataclasses reject an unhashable default ("mutable default ... use
default_factory"), so importing the module fails. torch 2.0 fixed it as
`field(default_factory=TensorProperties)`. Lightning imports that module for every
LightningModule (to register ShardedTensor state-dict hooks on torch < 2.1), so on
Debian 12 no LightningModule can be built.

run.sh installs this file in the suite's virtual environment with a `.pth` line
that imports it at interpreter start. It registers an import hook for that one
module only, which compiles the module's source with torch 2.0's fix instead of
the cached bytecode; nothing else changes, and nothing happens when the line is
already fixed (another torch).
"""

import importlib.abc
import importlib.machinery
import sys

TARGET = "torch.distributed._shard.sharded_tensor.metadata"
OLD = "field(default=TensorProperties())"
NEW = "field(default_factory=TensorProperties)"


class _FixedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):
        source = self.get_data(self.path).decode("utf-8")
        if OLD not in source:
            return super().get_code(fullname)
        return compile(source.replace(OLD, NEW), self.path, "exec", dont_inherit=True)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _FixedLoader(name, spec.origin)
        return spec


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
