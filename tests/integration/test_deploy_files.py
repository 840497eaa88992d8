#!/usr/bin/env python3
"""The deployment files under deploy/ that the test machines cannot run (issue 13, part 4).

- The Postfix snippets in README "Postfix side" are deploy/postfix/*.cf.snippet, byte for byte.
- deploy/compose.yaml: two services, portcullis in Postfix's network namespace, Postfix built
  with the XCLIENT snippets; `docker-compose config` validates it (offline, no engine).
- deploy/kubernetes/: the structure Kubernetes needs and the issue asks for (sidecar, probes on
  the admin endpoint, ConfigMap, TLS Secret, requests, non-root read-only no-capability
  portcullis), cross-checked between files; the ConfigMap's config passes
  `portcullis --check-config`. No Kubernetes schema is available offline: kubeconform and
  `kubectl --dry-run=server` are documented in the README, not run here.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from harness import REPO_ROOT, default_binary, make_certs  # noqa: E402

DEPLOY = os.path.join(REPO_ROOT, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")


def read(*parts):
    with open(os.path.join(*parts)) as f:
        return f.read()


def readme_block_after(link):
    """The first ``` block after the README line that links `link`."""
    text = read(REPO_ROOT, "README.md")
    at = text.index(f"]({link})")
    m = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL).search(text, at)
    return m.group(1)


class PostfixSnippetTest(unittest.TestCase):
    def test_readme_shows_the_snippet_files(self):
        for name in ("master.cf.snippet", "main.cf.snippet"):
            with self.subTest(name):
                self.assertEqual(readme_block_after(f"deploy/postfix/{name}"),
                                 read(DEPLOY, "postfix", name))

    def test_postfix_takes_xclient_from_loopback_on_10025(self):
        self.assertRegex(read(DEPLOY, "postfix", "master.cf.snippet"),
                         r"(?m)^127\.0\.0\.1:10025 inet .* smtpd\n\s+-o "
                         r"smtpd_authorized_xclient_hosts=127\.0\.0\.0/8$")


class ComposeTest(unittest.TestCase):
    def setUp(self):
        self.compose = yaml.safe_load(read(DEPLOY, "compose.yaml"))

    def test_two_services_sharing_one_network_namespace(self):
        services = self.compose["services"]
        self.assertEqual(set(services), {"portcullis", "postfix"})
        pc, pf = services["portcullis"], services["postfix"]
        self.assertEqual(pc["network_mode"], "service:postfix")
        self.assertEqual(pc["build"]["dockerfile"], "deploy/Dockerfile")
        self.assertEqual(pf["build"]["dockerfile"], "deploy/postfix/Dockerfile")
        for svc in (pc, pf):  # contexts are relative to the compose file
            self.assertTrue(os.path.isfile(os.path.join(DEPLOY, svc["build"]["context"],
                                                        svc["build"]["dockerfile"])))
        self.assertEqual(pf["ports"], ["25:2525"])
        self.assertEqual(pc["cap_drop"], ["ALL"])
        self.assertTrue(pc["read_only"])
        self.assertNotEqual(pc["user"].split(":")[0], "0")

    def test_postfix_image_installs_the_xclient_snippets(self):
        dockerfile = read(DEPLOY, "postfix", "Dockerfile")
        for name in ("main.cf.snippet", "master.cf.snippet"):
            self.assertRegex(dockerfile, rf"cat /etc/postfix/portcullis/{re.escape(name)} >> "
                                         rf"/etc/postfix/{name.split('.snippet')[0]}")

    def test_docker_compose_validates_it(self):
        # docker-compose 1.29 (Debian 12) checks the file against its compose schema and
        # resolves it without an engine. (podman-compose 1.0.3 has no offline check: even its
        # --dry-run creates the project's network and volumes.)
        if shutil.which("docker-compose") is None:
            self.skipTest("docker-compose is not installed (deploy/install-deps.sh)")
        r = subprocess.run(["docker-compose", "-p", "portcullis", "-f",
                            os.path.join(DEPLOY, "compose.yaml"), "config"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        resolved = yaml.safe_load(r.stdout)["services"]
        self.assertEqual(resolved["portcullis"]["network_mode"], "service:postfix")
        self.assertEqual(resolved["postfix"]["ports"], [{"published": 25, "target": 2525}])


class KubernetesTest(unittest.TestCase):
    def setUp(self):
        self.docs = {}
        for name in sorted(os.listdir(K8S)):
            if name.endswith(".yaml"):
                for doc in yaml.safe_load_all(read(K8S, name)):
                    self.assertIn("apiVersion", doc, name)
                    self.assertIn("kind", doc, name)
                    self.docs[(doc["kind"], doc.get("metadata", {}).get("name"))] = (name, doc)

    def doc(self, kind, name):
        self.assertIn((kind, name), self.docs)
        return self.docs[(kind, name)][1]

    def pod(self):
        return self.doc("Deployment", "portcullis")["spec"]["template"]["spec"]

    def container(self, name):
        return next(c for c in self.pod()["containers"] if c["name"] == name)

    def test_kustomization_lists_existing_files(self):
        kust = self.doc("Kustomization", None)
        for res in kust["resources"]:
            self.assertTrue(os.path.isfile(os.path.join(K8S, res)), res)
        # The placeholder Secret must never overwrite a real one on `kubectl apply -k`.
        self.assertNotIn("secret.yaml", kust["resources"])

    def test_a_postfix_pod_with_the_portcullis_sidecar(self):
        dep = self.doc("Deployment", "portcullis")
        self.assertEqual(dep["apiVersion"], "apps/v1")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        for key, value in dep["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels[key], value)
        self.assertEqual({c["name"] for c in self.pod()["containers"]}, {"portcullis", "postfix"})
        self.assertNotIn("hostNetwork", self.pod())
        svc = self.doc("Service", "portcullis")
        self.assertEqual(svc["spec"]["selector"], labels)
        port = svc["spec"]["ports"][0]
        self.assertEqual((port["port"], port["targetPort"]), (25, "smtp"))
        ports = {p["name"]: p["containerPort"] for p in self.container("portcullis")["ports"]}
        self.assertEqual(ports, {"smtp": 2525, "admin": 9025})

    def test_probes_on_the_admin_endpoint(self):
        pc = self.container("portcullis")
        self.assertEqual(pc["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
        self.assertEqual(pc["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "admin"})
        config = yaml.safe_load(self.doc("ConfigMap", "portcullis-config")["data"]
                                ["portcullis.yaml"])
        # The kubelet probes the pod's address, not the container's loopback.
        self.assertEqual(config["admin"]["listen"], "0.0.0.0:9025")
        self.assertEqual(config["listen"], ["0.0.0.0:2525"])
        self.assertEqual(config["upstream"]["address"], "127.0.0.1:10025")

    def test_requests_and_security_context(self):
        for c in self.pod()["containers"]:
            with self.subTest(c["name"]):
                self.assertEqual(set(c["resources"]["requests"]), {"cpu", "memory"})
                self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])
                self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
        sc = self.container("portcullis")["securityContext"]
        self.assertTrue(sc["runAsNonRoot"])
        self.assertNotEqual(sc["runAsUser"], 0)
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertNotIn("add", sc["capabilities"])

    def test_config_map_and_tls_secret_are_mounted_where_the_config_says(self):
        pod = self.pod()
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in self.container("portcullis")["volumeMounts"]}
        self.assertEqual(volumes[mounts["/etc/portcullis/portcullis.yaml"]]["configMap"]["name"],
                         "portcullis-config")
        secret_name = volumes[mounts["/etc/portcullis/tls"]]["secret"]["secretName"]
        secret = self.doc("Secret", secret_name)
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        self.assertEqual(set(secret["data"]), {"tls.crt", "tls.key"})
        config = yaml.safe_load(self.doc("ConfigMap", "portcullis-config")["data"]
                                ["portcullis.yaml"])
        self.assertEqual(config["tls"], {"cert": "/etc/portcullis/tls/tls.crt",
                                         "key": "/etc/portcullis/tls/tls.key"})
        # A read-only root: the spool must be a volume.
        self.assertIn("emptyDir", volumes[mounts[config["spool"]["directory"]]])

    def test_kubectl_kustomize_renders_it(self):
        # The one kubectl command that works without a cluster. Debian 12's kubectl
        # (kubernetes-client) is not installed by deploy/install-deps.sh: it conflicts with the
        # Google Cloud SDK's kubectl that some machines have.
        if shutil.which("kubectl") is None:
            self.skipTest("kubectl is not installed")
        r = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        docs = list(yaml.safe_load_all(r.stdout))
        self.assertEqual(sorted(d["kind"] for d in docs), ["ConfigMap", "Deployment", "Service"])
        pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        self.assertEqual(sorted(c["image"] for c in pod["containers"]),
                         ["registry.example.com/portcullis-postfix:0.2.0",
                          "registry.example.com/portcullis:0.2.0"])

    def test_the_config_map_passes_check_config(self):
        text = self.doc("ConfigMap", "portcullis-config")["data"]["portcullis.yaml"]
        certs = make_certs()
        self.addCleanup(certs.remove)
        tmp = tempfile.mkdtemp(prefix="portcullis-k8s-")
        self.addCleanup(shutil.rmtree, tmp, True)
        # The pod's paths, moved to this machine: the Secret's files and the spool volume.
        text = (text.replace("/etc/portcullis/tls/tls.crt", certs.cert)
                    .replace("/etc/portcullis/tls/tls.key", certs.key)
                    .replace("/var/spool/portcullis", os.path.join(tmp, "spool")))
        path = os.path.join(tmp, "portcullis.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([default_binary(), "--config", path, "--check-config"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("configuration OK", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
