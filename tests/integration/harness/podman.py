"""Rootful podman for the container tests, all of its state in one cache directory.

    pm = Podman()                      # configs under CACHE (default below)
    why = pm.unusable()                # None, or why podman cannot run here (the test skips)
    pm.ensure_base()                   # debootstrap --variant=minbase bookworm once, podman import
    pm.build("deploy/Dockerfile", REPO_ROOT, "localhost/portcullis:test",
             build_args={"BASE": pm.base_image}, network="host")
    pm.run("run", "-d", ...)           # any podman command with this configuration

There is no registry, so the base image is a debootstrap tree imported with `podman import`.
That tree, podman's storage (layers cached between runs) and buildah's cache mounts live under
CACHE, $PORTCULLIS_PODMAN_CACHE or /var/cache/portcullis-test/podman, so a machine pays for
the debootstrap (about 30 s) and the image's apt stages once. Those two steps need the Debian
mirror; everything else runs with loopback only.

Settings, each needed on the test machines (Debian 12, podman 4.3):
  runtime = "runc"           crun 1.8 fails there ("cgroups in hybrid mode not supported")
  cgroup_manager = cgroupfs  no systemd as init
  default_ulimits            podman's default raises nofile/nproc, which fails without
                             CAP_SYS_RESOURCE; these stay within the current hard limits
  driver = overlay           ($PORTCULLIS_PODMAN_DRIVER=vfs works too, much slower)
"""

import os
import re
import resource
import shutil
import subprocess
import time

DEFAULT_CACHE = "/var/cache/portcullis-test/podman"
BASE_IMAGE = "localhost/portcullis-test-base:bookworm"
MIRROR_DEFAULT = "http://deb.debian.org/debian"


def _apt_mirror():
    """The Debian mirror apt already uses for bookworm (deb822 .sources or sources.list)."""
    d = "/etc/apt/sources.list.d"
    paths = [os.path.join(d, n) for n in sorted(os.listdir(d))] if os.path.isdir(d) else []
    for path in paths + ["/etc/apt/sources.list"]:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in text.split("\n\n"):
                fields = dict(re.findall(r"^(URIs|Suites):\s*(.*)$", stanza, re.MULTILINE))
                if "bookworm" in fields.get("Suites", "").split() and "URIs" in fields:
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
                if m:
                    return m.group(1)
    return MIRROR_DEFAULT


class Podman:
    def __init__(self, cache=None, driver=None):
        self.cache = cache or os.environ.get("PORTCULLIS_PODMAN_CACHE", DEFAULT_CACHE)
        self.driver = driver or os.environ.get("PORTCULLIS_PODMAN_DRIVER", "overlay")
        self.base_image = BASE_IMAGE
        self.rootfs = os.path.join(self.cache, "rootfs")
        self.env = None

    # -- configuration -------------------------------------------------------------------

    def _configure(self):
        if self.env is not None:
            return
        os.makedirs(os.path.join(self.cache, "tmp"), exist_ok=True)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
        nproc = min(4096, 4096 if nproc == resource.RLIM_INFINITY else nproc)
        conf = os.path.join(self.cache, "containers.conf")
        storage = os.path.join(self.cache, f"storage-{self.driver}.conf")
        _write_if_changed(conf, f"""\
# written by tests/integration/harness/podman.py
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
""")
        _write_if_changed(storage, f"""\
# written by tests/integration/harness/podman.py
[storage]
driver = "{self.driver}"
graphroot = "{self.cache}/storage-{self.driver}"
runroot = "{self.cache}/runroot-{self.driver}"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage,
                        # buildah keeps RUN --mount=type=cache directories under $TMPDIR
                        TMPDIR=os.path.join(self.cache, "tmp"))

    def run(self, *args, check=True, timeout=120, capture=True, input=None):
        """Run `podman ARGS`; return the CompletedProcess (stdout and stderr as text)."""
        self._configure()
        result = subprocess.run(["podman", *args], env=self.env, timeout=timeout, text=True,
                                input=input, stdin=None if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout or ''}{result.stderr or ''}")
        return result

    # -- can it run at all? --------------------------------------------------------------

    def unusable(self):
        """Why podman cannot run containers here, or None. Only a missing program, not being
        root, or a runtime that cannot start a container count; anything else is a failure."""
        for program in ("podman", "runc"):
            if shutil.which(program) is None:
                return f"{program} is not installed (deploy/install-deps.sh installs it)"
        if os.geteuid() != 0:
            return "the container test uses rootful podman and needs root"
        try:
            self.run("info", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return f"podman info fails here: {exc}"
        return None

    # -- the base image ------------------------------------------------------------------

    def ensure_base(self, timeout=900):
        """The minbase bookworm tree (debootstrap once, into CACHE/rootfs) imported as
        BASE_IMAGE (once per storage)."""
        self._configure()
        if not os.path.isfile(os.path.join(self.rootfs, "etc", "debian_version")):
            if shutil.which("debootstrap") is None:
                raise RuntimeError("debootstrap is not installed (deploy/install-deps.sh)")
            partial = self.rootfs + ".tmp"
            shutil.rmtree(partial, ignore_errors=True)
            mirror = os.environ.get("PORTCULLIS_DEBIAN_MIRROR") or _apt_mirror()
            r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", partial, mirror],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=timeout)
            if r.returncode != 0:
                raise RuntimeError(
                    f"debootstrap --variant=minbase bookworm {mirror} failed ({r.returncode}); "
                    "it needs the Debian mirror: run `python3 tests/integration/test_container.py "
                    f"--prepare` where the mirror is reachable. Last lines:\n{r.stdout[-3000:]}")
            os.rename(partial, self.rootfs)  # only a complete tree ever has this name
        if self.run("image", "exists", self.base_image, check=False).returncode != 0:
            tar = subprocess.Popen(["tar", "-C", self.rootfs, "--numeric-owner", "-c", "."],
                                   stdout=subprocess.PIPE)
            try:
                self._configure()
                r = subprocess.run(["podman", "import", "-", self.base_image], env=self.env,
                                   stdin=tar.stdout, capture_output=True, text=True,
                                   timeout=timeout)
            finally:
                tar.stdout.close()
                tar.wait()
            if r.returncode != 0 or tar.returncode != 0:
                raise RuntimeError(f"podman import failed: {r.stdout}{r.stderr}")
        return self.base_image

    # -- images and containers -----------------------------------------------------------

    def build(self, dockerfile, context, tag=None, *, build_args=None, target=None,
              network="host", timeout=1800):
        """podman build --format docker (keeps HEALTHCHECK); returns (seconds, output)."""
        args = ["build", "--format", "docker", "--network", network, "-f", dockerfile]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if target:
            args += ["--target", target]
        if tag:
            args += ["-t", tag]
        started = time.monotonic()
        r = self.run(*args, context, check=False, timeout=timeout)
        took = time.monotonic() - started
        out = (r.stdout or "") + (r.stderr or "")
        if r.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} {context} failed ({r.returncode}) "
                               f"after {took:.0f}s; last lines:\n{out[-4000:]}")
        return took, out

    def remove_container(self, name):
        self.run("rm", "--force", "--time", "5", name, check=False, timeout=60)


def _write_if_changed(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except OSError:
        pass
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
