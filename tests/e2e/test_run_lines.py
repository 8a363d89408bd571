"""`tandem run` as the official Python SDK meets it: the environment `dapr run` gives the app
makes the SDK print no warning, and with `-u` the SDK reaches the gRPC API over the Unix
socket named as daprd names it (`DAPR_GRPC_ENDPOINT=unix://...`)."""

import textwrap

from conftest import PYTHON, write_component

APP = textwrap.dedent("""
    import os, sys, warnings
    warnings.simplefilter("always")  # a deprecation warning must show, if there is one
    socket_dir = sys.argv[1] if len(sys.argv) > 1 else None
    if socket_dir:
        os.environ["DAPR_GRPC_ENDPOINT"] = "unix://" + os.path.join(
            socket_dir, "dapr-%s-grpc.socket" % os.environ["APP_ID"])
        os.environ["DAPR_GRPC_PORT"] = "1"  # nothing there: the socket alone must serve gRPC
    from dapr.clients import DaprClient
    with DaprClient() as client:
        client.save_state("store", "greeting", "hello over " + ("unix" if socket_dir else "tcp"))
        print("read:", client.get_state("store", "greeting").data.decode(), flush=True)
""")


def start(tandem, tmp_path, name, extra_args, app_args):
    components = tmp_path / "components"
    write_component(components, "store.yaml", "store", "state.in-memory")
    (tmp_path / "app.py").write_text(APP)
    return tandem.run(name, [PYTHON, "app.py", *app_args], app_id=name, resources=[components],
                      cwd=tmp_path, extra_args=extra_args,
                      env={"DAPR_HEALTH_TIMEOUT": "20", "DAPR_API_TIMEOUT_SECONDS": "10"})


def test_the_sdk_prints_no_warning_under_tandem_run(tandem, tmp_path):
    sidecar = start(tandem, tmp_path, "quiet-app", [], [])
    assert sidecar.proc.wait_exit(60) == 0, sidecar.proc.tail()
    output = sidecar.proc.output()
    assert "== APP == read: hello over tcp" in output, output
    assert "Warning" not in output and "deprecated" not in output, output


def test_the_sdk_over_the_grpc_unix_socket(tandem, tmp_path):
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    sidecar = start(tandem, tmp_path, "socket-app", ["-u", str(sockets)], [str(sockets)])
    assert sidecar.proc.wait_exit(60) == 0, sidecar.proc.tail()
    output = sidecar.proc.output()
    assert "== APP == read: hello over unix" in output, output
    assert not list(sockets.iterdir()), "the sockets are removed when run ends"
