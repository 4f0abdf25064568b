"""`python -m finetune_phi.local.inference_server HOST AZMLINFSRV_ARGS...`: Azure ML's inference server
(azureml-inference-server-http, the one a managed deployment runs) bound to HOST: how the
`transformers` engine (finetune_phi.serving.transformers) serves on this machine.

The server hard-codes its bind address to 0.0.0.0, right inside a container but not on a
laptop, where `phi serve` must answer on 127.0.0.1 unless asked otherwise. This sets that
one constant and runs the server's own entry point, nothing else changed.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from azureml_inference_server_http import amlserver

    host, *server_args = argv
    amlserver.DEFAULT_HOST = host  # read by amlserver.run() when it starts gunicorn
    sys.argv = ["azmlinfsrv", *server_args]
    amlserver.run()


if __name__ == "__main__":
    main(sys.argv[1:])
