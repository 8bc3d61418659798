"""``tusd-py``: run the service (all of it, or one role) and upload files."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tusd_py.embedded_redis import RedisNotFound
from tusd_py.settings import Settings, SettingsError, documented_variables

logger = logging.getLogger("tusd_py.cli")

DESCRIPTION = """\
tusd-py: resumable uploads (tus 1.0.0) and background processing.

  serve    everything on one machine: an embedded redis-server (unless
           TUSD_PY_REDIS_URL is set), the API on TUSD_PY_HOST:TUSD_PY_PORT and
           one worker. Ctrl-C or SIGTERM stops all of them.
  api      the HTTP API alone, against TUSD_PY_REDIS_URL, in one process per
           CPU (TUSD_PY_API_PROCESSES); run several behind a load balancer,
           sharing TUSD_PY_DATA_DIR.
  worker   one processing worker alone, against TUSD_PY_REDIS_URL (run as
           many as you like; each runs TUSD_PY_MAX_JOBS tasks at once).
  upload   upload files with the tus protocol, resumably, with a progress bar.
"""


def _environment_help() -> str:
    lines = ["configuration (environment variables):"]
    for name, default, doc in documented_variables():
        lines.append(f"  {name} (default {default})\n      {doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tusd-py",
        description=DESCRIPTION,
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    roles = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    roles.add_parser("serve", help="run redis (embedded), the API and a worker together")
    api = roles.add_parser("api", help="run the HTTP API against TUSD_PY_REDIS_URL")
    # Set by tusd_py.api_nodes for the processes it starts, never by hand.
    api.add_argument("--node", type=int, default=None, help=argparse.SUPPRESS)
    api.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    roles.add_parser("worker", help="run one processing worker against TUSD_PY_REDIS_URL")
    from tusd_py.upload_cli import add_upload_arguments

    add_upload_arguments(roles.add_parser("upload", help="upload files (resumable, with progress)"))
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_api(settings: Settings, node: int | None = None, listen_fd: int | None = None) -> None:
    """The API under uvicorn; on SIGTERM running PATCHes answer with what they saved
    (see :mod:`tusd_py.graceful`) and the node exits within ``SHUTDOWN_GRACE``.

    With more than one API process this becomes their parent (:mod:`tusd_py.api_nodes`),
    which starts each again here with ``node`` (its slot) and the port's ``listen_fd``.
    """
    import uvicorn

    from tusd_py.access_log import uvicorn_log_config
    from tusd_py.app import assemble_app
    from tusd_py.graceful import SHUTDOWN_GRACE, DrainingServer
    from tusd_py.http_guard import GuardLimits, uvicorn_protocol
    from tusd_py.supervisor import port_problem
    from tusd_py.wiring import build_services, node_name

    if listen_fd is None:
        count = settings.api_process_count
        if count > 1:
            from tusd_py.api_nodes import ApiNodes

            sys.exit(ApiNodes(settings, count).run())
        problem = port_problem(settings.host, settings.port)
        if problem is not None:
            sys.exit(f"tusd-py api: {problem}")
    guard = GuardLimits(
        header_timeout=settings.header_timeout,
        body_idle_timeout=settings.body_idle_timeout,
        max_connections=settings.max_connections,
        max_connections_per_address=None if settings.trust_proxy else settings.max_connections_per_address,
    )
    services = build_services(settings, node_name(settings, node))
    config = uvicorn.Config(
        assemble_app(services, settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(),
        http=uvicorn_protocol(guard),
        proxy_headers=settings.trust_proxy,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
    )
    server = DrainingServer(config, drain=services.locker.drain)
    if listen_fd is None:
        server.run()
    else:
        import socket

        server.run(sockets=[socket.socket(fileno=listen_fd)])
    if not server.started:
        sys.exit(3)  # as uvicorn.run does when the server could not start


def run_worker(settings: Settings) -> None:
    from processing.worker import run_worker as run_processing_worker
    from tusd_py.processing_config import processing_config, upload_remover

    run_processing_worker(processing_config(settings), upload_remover(settings))


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"tusd-py: {exc}")
    configure_logging(settings.log_level)
    if args.command == "upload":
        from tusd_py.upload_cli import run_upload

        sys.exit(run_upload(args))
    if args.command in ("api", "worker") and settings.redis_url is None:
        sys.exit(f"tusd-py {args.command}: set TUSD_PY_REDIS_URL (only 'tusd-py serve' embeds a Redis)")
    from tusd_py.private_files import make_private

    make_private(settings.data_dir)
    try:
        if args.command == "serve":
            from tusd_py.supervisor import StartError, Supervisor

            try:
                sys.exit(Supervisor(settings).run())
            except StartError as exc:
                sys.exit(f"tusd-py serve: {exc}")
        if args.command == "api":
            run_api(settings, args.node, args.listen_fd)
        else:
            run_worker(settings)
    except RedisNotFound as exc:
        sys.exit(f"tusd-py: {exc}")
    except KeyboardInterrupt:
        pass
