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

The debootstrap and the image's two apt stages need the Debian mirror, which the test's
network namespace cannot reach. They are cached under /var/cache/portcullis-test/podman
(harness/podman.py), and tests/run.sh fills that cache before the tests, outside the
namespace, with
    python3 tests/integration/test_container.py --prepare
Run that once by hand before running this test in a namespace. The test skips only when podman
cannot run containers here at all (not installed, not root, `podman info` fails).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (REPO_ROOT, HarnessTestCase, Postfix, Unbound, free_port,  # noqa: E402
                     make_message, send_mail, wait_port, wait_until)
from harness.podman import Podman  # noqa: E402

DOCKERFILE = os.path.join(REPO_ROOT, "deploy", "Dockerfile")
IMAGE = "localhost/portcullis-test:latest"
UID = 10025
# The stages that run apt; --prepare builds them where the mirror is reachable.
APT_STAGES = ("build-deps", "runtime-base")


def build_args(pm):
    return {"BASE": pm.base_image, "JOBS": os.environ.get("JOBS", "2")}


def prepare():
    """Fill the cache: debootstrap, import, the apt stages. Needs the Debian mirror."""
    pm = Podman()
    why = pm.unusable()
    if why:
        print(f"test_container --prepare: nothing to do, podman cannot run here: {why}")
        return 0
    started = time.monotonic()
    pm.ensure_base()
    for stage in APT_STAGES:
        took, _ = pm.build(DOCKERFILE, REPO_ROOT, build_args=build_args(pm), target=stage)
        print(f"test_container --prepare: stage {stage} ready ({took:.0f}s)")
    print(f"test_container --prepare: done in {time.monotonic() - started:.0f}s "
          f"(cache {pm.cache})")
    return 0


class ContainerTest(HarnessTestCase):
    pm = None
    build_seconds = None

    @classmethod
    def setUpClass(cls):
        pm = Podman()
        why = pm.unusable()
        if why:
            raise unittest.SkipTest(why)
        pm.ensure_base()
        # --network host: inside the test's namespace that is loopback only. Every RUN that
        # needs apt is a cached layer (prepare()); a RUN that is not fails here, loudly.
        try:
            cls.build_seconds, _ = pm.build(DOCKERFILE, REPO_ROOT, IMAGE,
                                            build_args=build_args(pm))
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nIf an apt stage was not cached: run `python3 "
                               "tests/integration/test_container.py --prepare` where the "
                               "Debian mirror is reachable (tests/run.sh does).") from None
        print(f"\ntest_container: podman build took {cls.build_seconds:.0f}s", file=sys.stderr)
        cls.pm = pm

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
