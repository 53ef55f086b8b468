"""The ``labcrunch`` command: ``labcrunch serve [--host H] [--port P]``."""

from __future__ import annotations

import argparse

from labcrunch_service import __version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="labcrunch", description="labcrunch compute service")
    parser.add_argument("--version", action="version", version=f"labcrunch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API; computations run in worker processes")
    serve.add_argument("--host", default=None, help="default: $LABCRUNCH_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: $LABCRUNCH_PORT or 8000")
    args = parser.parse_args(argv)

    if args.command == "serve":
        import uvicorn

        from labcrunch_service.app import create_app
        from labcrunch_service.http.server import BodyPiecesProtocol
        from labcrunch_service.logs import configure_logging
        from labcrunch_service.malloc import keep_freed_memory
        from labcrunch_service.settings import get_settings

        settings = get_settings()
        # --host/--port, else LABCRUNCH_HOST/LABCRUNCH_PORT (as --help says). A generic $HOST is
        # not read: shells and CI set it to the machine's name, which would expose the service.
        host = args.host or settings.host
        port = settings.port if args.port is None else args.port
        configure_logging(settings.log_level, settings.log_json)
        keep_freed_memory(settings.retain_freed_bytes)  # the workers do the same
        # SIGTERM or Ctrl-C: stop accepting, let running requests finish for the grace period,
        # then the app's shutdown stops the workers (and the local Ray with every process).
        uvicorn.run(create_app(settings), host=host, port=port, workers=1, http=BodyPiecesProtocol,
                    log_config=None, access_log=False,
                    timeout_graceful_shutdown=settings.shutdown_grace_seconds)


if __name__ == "__main__":
    main()
