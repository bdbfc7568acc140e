"""RaptorQ symbol directories: register one, and the worker stores its files on the network.

:mod:`lumera_p2p.dht.plans.symbol_dir` decides (sans-I/O, beside the DHT's other plans),
:mod:`.files` reads and deletes, :mod:`.worker` drives them on the node's event loop,
:mod:`.registration` checks a registration; the table is :mod:`lumera_p2p.store.rqstore`.
"""

from lumera_p2p.dht.plans.symbol_dir import SymbolDirPlan, SymbolFile, removable
from lumera_p2p.store.rqstore import SymbolDirStatus
from lumera_p2p.symbols.worker import SymbolWorker, SymbolWorkerOptions

__all__ = [
    "SymbolDirPlan",
    "SymbolDirStatus",
    "SymbolFile",
    "SymbolWorker",
    "SymbolWorkerOptions",
    "removable",
]
