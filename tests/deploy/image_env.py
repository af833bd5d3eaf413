"""buildah, podman and podman-compose confined to one work folder, for the container test.

Why this module: there is no Docker engine on our machines and no registry may be reachable, yet
the image users deploy must be built and run in CI. Debian's buildah and podman do both as root;
what they need, and what was learnt doing it on a 2-core Debian box:

- storage (overlay) and run state under the work folder (storage.conf, CONTAINERS_STORAGE_CONF);
- runc as the OCI runtime (crun refuses a hybrid cgroup layout), cgroupfs (no systemd), events
  in a file, CNI network configs under the work folder (containers.conf, CONTAINERS_CONF);
- raised default ulimits (podman's defaults are below what the service opens);
- a base image made with debootstrap from the host's apt mirror when no registry answers;
- pip inside the build trusts the host's CA bundle (a proxy may re-sign HTTPS) through the
  Dockerfile's optional `pip_ca` build secret: nothing of it is baked into the image;
- the docker image format, which keeps HEALTHCHECK (the OCI format drops it).

Nothing is written outside the work folder except what podman keeps system-wide whatever its
configuration (the CNI plugins' iptables chains and /var/lib/cni leases, the blob-info cache in
/var/lib/containers/cache), and the apt packages when they were missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT

APT_PACKAGES = ["buildah", "podman", "debootstrap", "runc", "containernetworking-plugins", "iptables"]
TOOLS = ["buildah", "podman", "debootstrap", "runc"]
PULL_BASE = "docker.io/library/ubuntu:24.04"  # the CPU override's default, where a registry answers
IMAGE = "localhost/headtohead-service:cpu"  # the CPU override's `image:`
BUILD_FLAGS = ["--isolation", "chroot", "--network", "host", "--format", "docker", "--layers"]
HOST_CA = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")


def tools_missing_reason() -> str | None:
    """Install the Debian packages when a tool is missing; the reason the test cannot run, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "the container test needs root on Linux (rootful podman, debootstrap, apt-get)"
    if all(shutil.which(t) for t in TOOLS):
        return None
    if shutil.which("apt-get") is None:
        return f"{', '.join(t for t in TOOLS if not shutil.which(t))} missing and no apt-get to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
    ):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return None


def apt_mirror() -> tuple[str, str]:
    """(mirror URL, codename) of the host's Debian or Ubuntu: debootstrap builds the same release."""
    os_release = Path("/etc/os-release").read_text()
    codename = re.search(r"^VERSION_CODENAME=(\S+)", os_release, re.M)
    assert codename, "no VERSION_CODENAME in /etc/os-release"
    for f in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        m = re.search(r"^URIs:\s*(\S+)", f.read_text(), re.M)
        if m:
            return m.group(1), codename.group(1)
    lists = [Path("/etc/apt/sources.list"), *Path("/etc/apt").glob("sources.list.d/*.list")]
    for f in lists:
        m = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", f.read_text() if f.is_file() else "", re.M)
        if m:
            return m.group(1), codename.group(1)
    raise AssertionError("no apt source found under /etc/apt")


@dataclass
class Engine:
    """podman, buildah and podman-compose with their configuration and storage under `work`."""

    work: Path
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = self.work.resolve()
        for d in ("storage", "run", "tmp", "cni"):
            (w / d).mkdir(parents=True, exist_ok=True)
        (w / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{w}/storage"\nrunroot = "{w}/run/storage"\n'
        )
        (w / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]\n'
            "[engine]\n"
            'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{w}/run/events.log"\ntmp_dir = "{w}/run/libpod"\n'
            f'[engine.runtimes]\nrunc = ["{shutil.which("runc")}"]\n'
            f'[network]\nnetwork_config_dir = "{w}/cni"\n'
        )
        self.env = {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": f"{w}/storage.conf",
            "CONTAINERS_CONF": f"{w}/containers.conf",
            "TMPDIR": f"{w}/tmp",
        }

    def run(self, *cmd: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
        r = subprocess.run(
            cmd, env=kw.pop("env", self.env), capture_output=True, text=True, timeout=timeout, **kw
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{(r.stdout + r.stderr)[-4000:]}")
        return r

    def podman(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.run("podman", *args, check=check, timeout=timeout)

    def compose(self, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """podman-compose over docker-compose.yml and the CPU override, as project h2h-image-test."""
        files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "deploy" / "compose.cpu.yml")]
        exe = Path(sys.executable).with_name("podman-compose")
        cmd = [str(exe), "-p", "h2h-image-test", *files, *args]
        return self.run(*cmd, env={**self.env, **env}, cwd=ROOT, timeout=timeout)

    def base_image(self) -> str:
        """The image FROM builds on: H2H_IMAGE_TEST_BASE if set (pulled), else the CPU override's
        default base where it is stored or pulls, else the host's release made with debootstrap
        from its own apt mirror (kept in storage for the next run)."""
        if os.environ.get("H2H_IMAGE_TEST_BASE"):
            self.podman("pull", os.environ["H2H_IMAGE_TEST_BASE"], timeout=600)
            return os.environ["H2H_IMAGE_TEST_BASE"]
        mirror, codename = apt_mirror()
        local = f"localhost/h2h-base:{codename}"
        for image in (PULL_BASE, local):
            if self.podman("image", "exists", image, check=False).returncode == 0:
                return image
        try:
            if self.podman("pull", PULL_BASE, check=False, timeout=60).returncode == 0:
                return PULL_BASE
        except subprocess.TimeoutExpired:
            pass  # a registry that never answers: build the base here
        rootfs = self.work / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        self.run("debootstrap", "--variant=minbase", codename, str(rootfs), mirror, timeout=900)
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        imp = self.run(
            "podman", "import", "--change", 'CMD ["/bin/bash"]', "-", local, stdin=tar.stdout, check=False
        )
        assert tar.wait() == 0 and imp.returncode == 0, imp.stderr[-2000:]
        shutil.rmtree(rootfs)
        return local

    def build_args(self) -> str:
        """`podman build` flags for podman-compose: chroot isolation, host network, docker format,
        and the host's CA bundle as the optional pip_ca build secret."""
        flags = list(BUILD_FLAGS)
        if HOST_CA.is_file():
            flags += ["--secret", f"id=pip_ca,src={HOST_CA}"]
        return " ".join(flags)

    def wait_ready(self, name: str, url: str, timeout: float = 120) -> float:
        """Seconds until GET `url` answers 200; AssertionError with the container's log when it
        exits or the time runs out."""
        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            state = self.podman("inspect", "--format", "{{.State.Running}}", name, check=False)
            if state.stdout.strip() != "true":
                break
            time.sleep(0.2)
        logs = self.podman("logs", name, check=False)
        raise AssertionError(f"{name} not ready at {url}:\n{(logs.stdout + logs.stderr)[-4000:]}")
