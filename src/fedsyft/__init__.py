"""fedsyft: federated learning with FedAvg over real PySyft datasites.

The Python API in one place (see the README for a walkthrough)::

    from fedsyft import RunConfig, simulate, run_on_datasites, demo   # what the commands do, one call each
    from fedsyft import Datasites, WorkLimits, connect_sites, request_approval, run_experiment
    from fedsyft import load_mnist, shard_mnist, LocalSite, fedavg, local_train, evaluate
    from fedsyft import make_strategy, make_partition, PrivatePlan, local_train_dp

Importing fedsyft does not import PySyft; that happens when a datasite is reached.
"""

__version__ = "0.1.0"

from .aggregate import fedavg
from .connection import SiteCredentials, read_sites_file, write_sites_file
from .data import Images, MNIST, as_images, load_mnist
from .datasite.launch import Datasites, shard_mnist
from .experiment import RunConfig, connect_sites, request_approval, run_experiment
from .federation import federate
from .history import History
from .limits import WorkLimits
from .partition import dirichlet, iid, make_partition
from .privacy import PrivacyGuard, PrivacyLedger, PrivatePlan
from .sites import LocalSite, SiteError
from .strategies import Strategy, make_strategy
from .task import evaluate, local_train, local_train_dp, model_from_params
from .workflows import demo, run_on_datasites, simulate

__all__ = [
    "Datasites", "History", "Images", "LocalSite", "MNIST", "PrivacyGuard", "PrivacyLedger", "PrivatePlan",
    "RunConfig", "SiteCredentials", "SiteError", "Strategy", "WorkLimits",
    "as_images", "connect_sites", "demo", "dirichlet", "evaluate", "fedavg", "federate", "iid", "load_mnist",
    "local_train", "local_train_dp", "make_partition", "make_strategy", "model_from_params", "read_sites_file",
    "request_approval", "run_experiment", "run_on_datasites", "shard_mnist", "simulate", "write_sites_file",
]
