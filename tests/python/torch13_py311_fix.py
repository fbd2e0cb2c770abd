"""Debian 12's python3-torch 1.13 on Python 3.11: two places of torch that Python
3.11 breaks, fixed at import time for the Python suite.

torch 1.13's `torch/distributed/_shard/sharded_tensor/metadata.py` declares
`tensor_properties: TensorProperties = field(default=TensorProperties())`; Python
3.11's dataclasses reject an unhashable default ("mutable default ... use
default_factory"), so importing the module fails. torch 2.0 fixed it as
`field(default_factory=TensorProperties)`. Lightning imports that module for every
LightningModule (to register ShardedTensor state-dict hooks on torch < 2.1), so on
Debian 12 no LightningModule can be built.

torch 1.13's `torch/distributed/elastic/multiprocessing/api.py` reads torchrun's
`--redirects`/`--tee` values by looking for a member of the `Std` flag equal to the
number; Python 3.11 no longer iterates a flag's zero and composite members, so the
default `0` gives None and torchrun fails before it starts a worker
(`'NoneType' object has no attribute 'get'`). The fix builds the member from the
number (`Std(v)`), which every Python accepts.

run.sh installs this file in the suite's virtual environment with a `.pth` line
that imports it at interpreter start. It registers an import hook for those two
modules only, which compiles each one's source with its fix instead of the cached
bytecode; nothing else changes, and nothing happens when the lines are already
fixed (another torch).
"""

import importlib.abc
import importlib.machinery
import sys

# module: (text Python 3.11 breaks, its fix)
FIXES = {
    "torch.distributed._shard.sharded_tensor.metadata": (
        "field(default=TensorProperties())",
        "field(default_factory=TensorProperties)",
    ),
    "torch.distributed.elastic.multiprocessing.api": (
        "            for s in Std:\n                if s == v:\n                    return s\n",
        "            return Std(v)\n",
    ),
}


class _FixedLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):
        old, new = FIXES[fullname]
        source = self.get_data(self.path).decode("utf-8")
        if old not in source:
            return super().get_code(fullname)
        return compile(source.replace(old, new), self.path, "exec", dont_inherit=True)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in FIXES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _FixedLoader(name, spec.origin)
        return spec


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
