#!/usr/bin/env python3
"""The container image (issue 13, part 4): deploy/Dockerfile built and run with podman.

- `podman build` of deploy/Dockerfile FROM a minbase bookworm made with debootstrap and
  `podman import` (there is no registry): the real multi-stage build, compiling the sources.
- The image runs as uid 10025 with no capabilities, holds the binary with every library it
  links and no compiler, has /etc/portcullis/portcullis.yaml passing --check-config, and logs
  to stderr.
- A message sent to the running container (host networking, inside the test's loopback-only
  namespace) reaches a Postfix on the host's loopback, with the client passed by XCLIENT.
- `podman healthcheck run` is healthy while portcullis serves /healthz, and unhealthy where
  nothing answers.
- The Kubernetes pod emulated with podman (PodLayoutTest): deploy/postfix/Dockerfile's image
  with exactly the capabilities deployment.yaml adds, and the portcullis sidecar in its network
  namespace with the pod's securityContext (uid, read-only root, no capabilities), the
  ConfigMap's config and a TLS Secret's files: /readyz and /healthz answer 200, and a message
  sent with STARTTLS is delivered by that Postfix, which logs the client passed by XCLIENT.

The debootstrap and the images' apt stages need the Debian mirror, which the test's
network namespace cannot reach. They are cached under /var/cache/portcullis-test/podman
(harness/podman.py), and tests/run.sh fills that cache before the tests, outside the
namespace, with
    python3 tests/integration/test_container.py --prepare
Run that once by hand before running this test in a namespace. The test skips only when podman
cannot run containers here at all (not installed, not root, `podman info` fails).
"""

import http.client
import json
import os
import re
import shutil
import smtplib
import sys
import tempfile
import time
import unittest

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from harness import (REPO_ROOT, HarnessTestCase, Postfix, Unbound, free_port,  # noqa: E402
                     is_listening, make_message, send_mail, wait_port, wait_until)
from harness.podman import Podman  # noqa: E402

DOCKERFILE = os.path.join(REPO_ROOT, "deploy", "Dockerfile")
POSTFIX_DOCKERFILE = os.path.join(REPO_ROOT, "deploy", "postfix", "Dockerfile")
K8S = os.path.join(REPO_ROOT, "deploy", "kubernetes")
IMAGE = "localhost/portcullis-test:latest"
POSTFIX_IMAGE = "localhost/portcullis-postfix-test:latest"
# Tags that keep the stages' layers (the build cache) through `podman image prune`.
STAGE_IMAGE = "localhost/portcullis-test-stage"
UID = 10025
# The stages that run apt; --prepare builds them where the mirror is reachable.
APT_STAGES = ("build-deps", "runtime-base")


def build_args(pm):
    return {"BASE": pm.base_image, "JOBS": os.environ.get("JOBS", "2")}


def prepare():
    """Fill the cache: debootstrap, import, the apt stages, the image. Needs the Debian
    mirror."""
    pm = Podman()
    why = pm.unusable()
    if why:
        print(f"test_container --prepare: nothing to do, podman cannot run here: {why}")
        return 0
    started = time.monotonic()
    pm.ensure_base()
    for stage in APT_STAGES:
        took, _ = pm.build(DOCKERFILE, REPO_ROOT, f"{STAGE_IMAGE}:{stage}",
                           build_args=build_args(pm), target=stage)
        print(f"test_container --prepare: stage {stage} ready ({took:.0f}s)")
    took, _ = pm.build(POSTFIX_DOCKERFILE, REPO_ROOT, POSTFIX_IMAGE,
                       build_args={"BASE": pm.base_image})
    print(f"test_container --prepare: deploy/postfix/Dockerfile ready ({took:.0f}s)")
    # The compile too (about 10 min cold on 2 cores): here it runs alone, before the tests,
    # instead of inside the test run next to the other tests; the test's build is then a
    # cache hit.
    took, _ = pm.build(DOCKERFILE, REPO_ROOT, IMAGE, build_args=build_args(pm))
    print(f"test_container --prepare: deploy/Dockerfile built ({took:.0f}s)")
    print(f"test_container --prepare: done in {time.monotonic() - started:.0f}s "
          f"(cache {pm.cache})")
    return 0


_built = {}


def built_images():
    """Build both images once per run (cached layers make a rebuild cheap); return the Podman.
    Raises SkipTest only when podman cannot run here at all."""
    if "pm" in _built:
        return _built["pm"]
    pm = Podman()
    why = pm.unusable()
    if why:
        raise unittest.SkipTest(why)
    pm.ensure_base()
    # --network host: inside the test's namespace that is loopback only. Every RUN that needs
    # apt is a cached layer (prepare()); a RUN that is not fails here, loudly.
    try:
        took, _ = pm.build(DOCKERFILE, REPO_ROOT, IMAGE, build_args=build_args(pm))
        print(f"\ntest_container: podman build took {took:.0f}s", file=sys.stderr)
        took, _ = pm.build(POSTFIX_DOCKERFILE, REPO_ROOT, POSTFIX_IMAGE,
                           build_args={"BASE": pm.base_image})
        print(f"test_container: the Postfix image took {took:.0f}s", file=sys.stderr)
        # Tag the builder (a cache hit), then drop untagged images: superseded builders and
        # images of earlier runs, so that the cache does not grow with every source change.
        pm.build(DOCKERFILE, REPO_ROOT, f"{STAGE_IMAGE}:builder", build_args=build_args(pm),
                 target="builder")
        pruned = pm.run("image", "prune", "--force", timeout=300, check=False)
        if pruned.returncode != 0:  # housekeeping only: the images under test are tagged
            print(f"test_container: image prune failed: {pruned.stderr}", file=sys.stderr)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\nIf an apt stage was not cached: run `python3 "
                           "tests/integration/test_container.py --prepare` where the "
                           "Debian mirror is reachable (tests/run.sh does).") from None
    _built["pm"] = pm
    return pm


class ContainerTest(HarnessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pm = built_images()

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="portcullis-container-")
        os.chmod(d, 0o755)  # the container's user reads the config in it
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def in_image(self, script):
        """Run a bash script in a throwaway container of the image, without network."""
        return self.pm.run("run", "--rm", "--network", "none", "--entrypoint", "/bin/bash",
                           IMAGE, "-c", script).stdout

    def start_container(self, name, config_text, *extra):
        d = self.tmpdir()
        config = os.path.join(d, "portcullis.yaml")
        with open(config, "w") as f:
            f.write(config_text)
        os.chmod(config, 0o644)
        self.pm.remove_container(name)
        self.addCleanup(self.pm.remove_container, name)
        self.pm.run("run", "-d", "--name", name, "--network", "host", "--log-driver", "k8s-file",
                    "-v", f"{config}:/etc/portcullis/portcullis.yaml:ro", *extra, IMAGE)
        self.addCleanup(self._print_logs_if_failed, name)

    def _print_logs_if_failed(self, name):
        if self._failed():
            r = self.pm.run("logs", name, check=False)
            print(f"\n----- podman logs {name} -----\n{r.stdout[-4000:]}{r.stderr[-4000:]}",
                  file=sys.stderr)

    def test_image_holds_the_binary_its_libraries_and_config_only(self):
        out = self.in_image(
            "id -u; id -g; ldd /usr/sbin/portcullis; echo compilers=$(command -v g++ cc cmake);"
            "/usr/sbin/portcullis --config /etc/portcullis/portcullis.yaml --check-config 2>&1;"
            "stat -c 'spool=%u:%g:%a' /var/spool/portcullis")
        lines = out.splitlines()
        self.assertEqual(lines[:2], [str(UID), str(UID)], out)
        self.assertNotIn("not found", out)
        for lib in ("libevent_core", "libldns", "libspdlog", "libyaml-cpp", "libssl", "libpcre2"):
            self.assertRegex(out, rf"{lib}\S* => /", out)
        self.assertIn("compilers=\n", out + "\n")
        self.assertRegex(out, r"portcullis: configuration OK \(1 listener", out)
        self.assertIn(f"spool={UID}:{UID}:700", out)
        image = json.loads(self.pm.run("image", "inspect", IMAGE).stdout)[0]
        config = image["Config"]
        self.assertEqual(config["User"], f"{UID}:{UID}")
        self.assertEqual(config["Entrypoint"], ["/usr/sbin/portcullis"])
        self.assertEqual(config["Cmd"], ["--config", "/etc/portcullis/portcullis.yaml"])
        # Kept only in the docker image format (podman build --format docker).
        self.assertIn("GET /healthz", " ".join(image["Healthcheck"]["Test"]))

    def test_a_message_goes_through_the_container_to_postfix(self):
        dns = self.start(Unbound())
        pf = self.start(Postfix())
        port, admin = free_port(), free_port()
        name = f"portcullis-test-{os.getpid()}"
        self.start_container(name, f"""\
hostname: container.test.local
listen: ["127.0.0.1:{port}"]
admin: {{listen: "127.0.0.1:{admin}"}}
upstream: {{address: "{pf.address}", identity: xclient}}
dns: {{servers: ["{dns.address}"]}}
log: {{output: stderr}}
""", "-e", f"PORTCULLIS_ADMIN_PORT={admin}")
        wait_port("127.0.0.1", port, 30)

        send_mail("127.0.0.1", port, msg=make_message(
            "sender@client.test", "user@test.local", subject="through the container"))
        delivered = pf.emails(1)[0]
        self.assertEqual(delivered["Subject"], "through the container")
        # XCLIENT from the container: Postfix saw the real client, verified by reverse DNS.
        pf.wait_for_log(r"client=client\.test\[127\.0\.0\.1\]")

        # The daemon runs as the image's user, with no capabilities at all.
        pid = int(self.pm.run("inspect", "--format", "{{.State.Pid}}", name).stdout)
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        self.assertRegex(status, rf"\nUid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}\n")
        self.assertRegex(status, rf"\nGid:\s+{UID}\s+{UID}\s+{UID}\s+{UID}\n")
        self.assertRegex(status, r"\nCapEff:\s+0+\n")
        with open(f"/proc/{pid}/cmdline") as f:
            self.assertEqual(f.read().split("\0")[0], "/usr/sbin/portcullis")

        # podman 4.3 prints nothing for a healthy container, "unhealthy" (status 1) otherwise.
        r = self.pm.run("healthcheck", "run", name, check=False)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, ""), r.stderr)
        health = json.loads(self.pm.run("inspect", name).stdout)[0]["State"]["Health"]
        self.assertEqual(health["Status"], "healthy", health)

        # Its log lines arrive on stderr (the k8s-file log tags each line with its stream).
        log_path = self.pm.run("inspect", "--format", "{{.HostConfig.LogConfig.Path}}",
                               name).stdout.strip()
        text = wait_until(lambda: _read_if_matches(log_path, r" event=session "), 10,
                          what="the session line in the container's log")
        self.assertRegex(text, r"(?m)^\S+ stderr F .* event=session ")
        self.assertNotRegex(text, r"(?m)^\S+ stdout ")

    def test_the_health_check_fails_where_nothing_answers(self):
        # The same image and HEALTHCHECK, with nothing serving /healthz (no network at all):
        # `podman healthcheck run` must say so rather than pass by construction.
        name = f"portcullis-test-idle-{os.getpid()}"
        self.pm.remove_container(name)
        self.addCleanup(self.pm.remove_container, name)
        self.pm.run("run", "-d", "--name", name, "--network", "none", "--entrypoint",
                    "/bin/sleep", IMAGE, "300")
        r = self.pm.run("healthcheck", "run", name, check=False)
        self.assertEqual((r.returncode, r.stdout.strip()), (1, "unhealthy"), r.stderr)


class PodLayoutTest(HarnessTestCase):
    """deploy/kubernetes/ emulated with podman: the Postfix image with exactly the
    capabilities deployment.yaml gives it, and the portcullis sidecar in its network namespace
    with the pod's security settings, the ConfigMap's config and a TLS Secret's files."""

    @classmethod
    def setUpClass(cls):
        cls.pm = built_images()

    def setUp(self):
        docs = {}
        for name in ("configmap.yaml", "deployment.yaml"):
            with open(os.path.join(K8S, name)) as f:
                doc = yaml.safe_load(f)
            docs[doc["kind"]] = doc
        pod = docs["Deployment"]["spec"]["template"]["spec"]
        self.containers = {c["name"]: c for c in pod["containers"]}
        self.config_text = docs["ConfigMap"]["data"]["portcullis.yaml"]

    def test_postfix_and_the_sidecar_share_localhost(self):
        # The pod's fixed ports, in the test's own network namespace (tests/run.sh: unshare).
        busy = [p for p in (25, 2525, 9025, 10025) if is_listening(p)]
        self.assertEqual(busy, [], "ports the pod uses are taken: run the test in a "
                                   "loopback-only network namespace (unshare --net)")
        dns = self.start(Unbound())
        certs = self.make_certs()
        d = tempfile.mkdtemp(prefix="portcullis-pod-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        tls = os.path.join(d, "tls")
        os.mkdir(tls, 0o755)
        # A Secret volume with fsGroup 10025 and defaultMode 0440.
        for src, dst in ((certs.cert, "tls.crt"), (certs.key, "tls.key")):
            shutil.copy(src, os.path.join(tls, dst))
            os.chown(os.path.join(tls, dst), 0, UID)
            os.chmod(os.path.join(tls, dst), 0o440)
        spool = os.path.join(d, "spool")  # an emptyDir: the kubelet makes it 0777
        os.mkdir(spool)
        os.chmod(spool, 0o777)
        config = os.path.join(d, "portcullis.yaml")
        with open(config, "w") as f:  # the ConfigMap's, plus the test's DNS server
            f.write(self.config_text + f'dns: {{servers: ["{dns.address}"]}}\n')
        os.chmod(config, 0o644)

        pf_sc = self.containers["postfix"]["securityContext"]
        pf = f"portcullis-pod-postfix-{os.getpid()}"
        self.pm.remove_container(pf)
        self.addCleanup(self.pm.remove_container, pf)
        # The pod's network namespace is the test's own (loopback only).
        self.pm.run("run", "-d", "--name", pf, "--network", "host",
                    "--cap-drop", "ALL", "--cap-add", ",".join(pf_sc["capabilities"]["add"]),
                    "--security-opt", "no-new-privileges", POSTFIX_IMAGE)
        self.addCleanup(self._print_logs_if_failed, pf)
        wait_port("127.0.0.1", 10025, 30)

        sc = self.containers["portcullis"]["securityContext"]
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        pc = f"portcullis-pod-sidecar-{os.getpid()}"
        self.pm.remove_container(pc)
        self.addCleanup(self.pm.remove_container, pc)
        self.pm.run("run", "-d", "--name", pc, "--network", f"container:{pf}",
                    "--user", f"{sc['runAsUser']}:{sc['runAsGroup']}", "--read-only",
                    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                    "-v", f"{spool}:/var/spool/portcullis",
                    "-v", f"{config}:/etc/portcullis/portcullis.yaml:ro",
                    "-v", f"{tls}:/etc/portcullis/tls:ro", IMAGE)
        self.addCleanup(self._print_logs_if_failed, pc)
        wait_port("127.0.0.1", 2525, 30)

        # The probes, as the kubelet sends them (here on loopback: the pod's address).
        wait_until(lambda: _http_status(9025, "/readyz") == 200, 30, what="/readyz 200")
        self.assertEqual(_http_status(9025, "/healthz"), 200)

        with smtplib.SMTP("127.0.0.1", 2525, local_hostname="client.test", timeout=30) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("starttls"), s.esmtp_features)  # the Secret's cert
            s.starttls()
            s.ehlo("client.test")
            s.sendmail("sender@client.test", ["postmaster@localhost"],
                       make_message("sender@client.test", "postmaster@localhost",
                                    subject="through the pod"))
        # Postfix, in its own container, took it from portcullis over XCLIENT and delivered it.
        logs = wait_until(lambda: _logs_matching(self.pm, pf, r"status=sent"), 30,
                          what="Postfix's delivery in its log")
        self.assertRegex(logs, r"client=client\.test\[127\.0\.0\.1\]")

    def _print_logs_if_failed(self, name):
        if self._failed():
            r = self.pm.run("logs", name, check=False)
            print(f"\n----- podman logs {name} -----\n{r.stdout[-4000:]}{r.stderr[-4000:]}",
                  file=sys.stderr)


def _http_status(port, path):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


def _logs_matching(pm, name, regex):
    r = pm.run("logs", name, check=False)
    text = (r.stdout or "") + (r.stderr or "")
    return text if re.search(regex, text) else None


def _read_if_matches(path, regex):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return text if re.search(regex, text) else None


if __name__ == "__main__":
    if sys.argv[1:] == ["--prepare"]:
        sys.exit(prepare())
    unittest.main()
