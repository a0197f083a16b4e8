"""gunicorn settings for the example host app:
``gunicorn -c examples/host_app/gunicorn.conf.py 'examples.host_app:create_app()'``.

The app (and its crawl_requests table) is built once in the master (``preload_app``); each web
process then starts its own lexyjobs runtime right after the fork — its scheduler and, unless
``WEB_RUNS_JOBS=false``, its worker threads — and stops it gracefully when it exits."""
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "gthread"  # the panel's live updates (SSE /events) hold a thread each, not a process
threads = 8
preload_app = True
control_socket_disable = True  # its default path (~/.gunicorn/gunicorn.ctl) would be shared by every app of the user


def post_worker_init(worker):  # noqa: ANN001, ANN201 (gunicorn's hook signature)
    worker.wsgi.extensions["host_app.jobs"].start()


def worker_exit(server, worker):  # noqa: ANN001, ANN201
    jobs = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("host_app.jobs")
    if jobs is not None:
        jobs.stop()
