"""Apps that speak TLS (`--app-protocol https` and `grpcs`): tandem calls and probes them
over TLS without verifying their (self-signed) certificate, as daprd does."""

import subprocess

import requests

from conftest import APPS, E2E, PYTHON, free_port, wait_until


def self_signed(directory):
    key, cert = directory / "app.key", directory / "app.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def healthy(sidecar):
    return "App entered healthy status" in sidecar.proc.output()


def test_https_app_is_invoked_and_probed_over_tls(tandem, tmp_path):
    key, cert = self_signed(tmp_path)
    port = free_port()
    app = tandem.run("https-app", [str(PYTHON), "-m", "uvicorn", "callee:app", "--port", str(port),
                                   "--ssl-keyfile", str(key), "--ssl-certfile", str(cert)],
                     app_id="secure-greeter", app_port=port, cwd=E2E / "apps",
                     extra_args=["--app-protocol", "https", "--enable-app-health-check",
                                 "--app-health-check-path", "/greet/probe",
                                 "--app-health-probe-interval", "1"])
    wait_until(lambda: healthy(app), 30, "the HTTPS app to be probed healthy")
    answer = requests.post(f"{app.url}/v1.0/invoke/secure-greeter/method/greet/tls?lang=en",
                           data="x", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["greeting"] == "hello tls"
    assert answer.json()["query"] == {"lang": "en"}


def test_grpcs_app_is_invoked_and_probed_over_tls(tandem, tmp_path):
    key, cert = self_signed(tmp_path)
    port = free_port()
    app = tandem.run("grpcs-app", [str(PYTHON), str(APPS / "grpcs_app.py")],
                     app_id="secure-grpc", app_port=port,
                     env={"TLS_KEY": str(key), "TLS_CERT": str(cert)},
                     extra_args=["--app-protocol", "grpcs", "--enable-app-health-check",
                                 "--app-health-probe-interval", "1"])
    wait_until(lambda: healthy(app), 30, "the grpcs app to be probed healthy")
    answer = requests.post(f"{app.url}/v1.0/invoke/secure-grpc/method/echo", data="hi",
                           headers={"content-type": "text/plain"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.text == "secure echo: hi"
