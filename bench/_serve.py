"""Serve one department adapter for the benchmark: ``python bench/_serve.py CONFIG``.

The same provider app as ``onceonly adapter serve``, with its garbage collector settled
and its answers written alike, but under uvicorn with log level warning and no access
log, like the hub in the benchmark, so that neither side pays for a log line per
request that the other does not.
"""

import sys

import uvicorn
from onceonly.adapters import create_provider_app, load_config

try:
    from onceonly.adapters.cli import settle_heap_for_serving
except ImportError:  # a --source from before decision 0035, served as it was

    def settle_heap_for_serving() -> None:
        pass


try:  # each answer's head written with its body, as onceonly adapter serve does
    from onceonly.adapters.serving import HeadWithBodyProtocol

    PROTOCOL: dict[str, object] = {"http": HeadWithBodyProtocol}
except ImportError:  # a --source from before it, served as it was
    PROTOCOL = {}


def main(config_path: str) -> None:
    config = load_config(config_path)
    app = create_provider_app(config)
    settle_heap_for_serving()  # as onceonly adapter serve does
    uvicorn.run(
        app,
        host=config.listen_host,
        port=config.listen_port,
        log_level="warning",
        access_log=False,
        **PROTOCOL,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main(sys.argv[1])
