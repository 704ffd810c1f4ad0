"""multibox_client: Python client of the multibox loss service (numpy only).

    from multibox_client import Client
    client = Client("http://127.0.0.1:8080")
    result = client.loss(loc, conf, "ssd300_voc", targets, bipartite="per_gt")
    result.loss, result.grad_loc, result.grad_conf

The PyTorch module lives in multibox_client.torch (RemoteMultiBoxLoss); importing this
package never imports torch.
"""

from .client import Client
from .errors import MultiboxConnectionError, MultiboxError
from .result import LossResult

__version__ = "0.1.0"
__all__ = ["Client", "LossResult", "MultiboxError", "MultiboxConnectionError", "__version__"]
