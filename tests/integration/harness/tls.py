"""Throwaway TLS material for STARTTLS tests, made with the openssl CLI in a temp dir.

    certs = make_certs()          # Certs(dir, ca_cert, ca_key, cert, key)
    ctx = certs.server_context()  # ssl.SSLContext for FakeSmtp(tls_context=...)

Keys are generated per run and never written into the repository.
"""

import collections
import os
import shutil
import ssl
import subprocess
import tempfile

from .process import require_program


class Certs(collections.namedtuple("Certs", "dir ca_cert ca_key cert key")):
    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        return ctx

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def make_certs(directory=None, cn="localhost",
               sans=("DNS:localhost", "DNS:portcullis.test.local", "IP:127.0.0.1", "IP:::1"),
               days=2):
    """Create a CA and a server certificate signed by it (EC P-256, fast). Returns Certs."""
    openssl = require_program("openssl")
    d = directory or tempfile.mkdtemp(prefix="portcullis-tls-")
    os.makedirs(d, exist_ok=True)
    p = lambda name: os.path.join(d, name)  # noqa: E731

    def run(*args):
        subprocess.run([openssl, *args], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", str(days),
        "-subj", "/CN=portcullis test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-new", *ec, "-keyout", p("server.key"), "-out", p("server.csr"),
        "-subj", f"/CN={cn}")
    with open(p("server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                f"subjectAltName={','.join(sans)}\n")
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-out", p("server.crt"), "-days", str(days),
        "-extfile", p("server.ext"))
    for key in ("ca.key", "server.key"):
        os.chmod(p(key), 0o644)  # readable by a daemon that dropped privileges; temp dir only
    return Certs(d, p("ca.crt"), p("ca.key"), p("server.crt"), p("server.key"))
