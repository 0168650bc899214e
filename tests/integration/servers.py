"""Finding the real servers for integration tests.

Order: endpoints named by the environment (IGNITE_HOST/IGNITE_PORT, PULSAR_URL, CASSANDRA_HOSTS);
else start them with scripts/devservices (JVMs from Maven Central jars); else, when a Docker engine
answers, testcontainers. A test that needs a server and finds none fails and says how to start it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "scripts" / "devservices"
HOW = (
    'start it with `eval "$(scripts/devservices up {name})"` (needs Java 17 and Maven), '
    "or point {vars} at a running server"
)


@attrs.frozen
class Endpoint:
    env: dict[str, str]
    stop: Callable[[], None] | None = None


def _from_env(keys: tuple[str, ...]) -> dict[str, str] | None:
    if all(os.environ.get(k) for k in keys[:1]):
        return {k: os.environ[k] for k in keys if os.environ.get(k)}
    return None


def _from_launcher(name: str) -> Endpoint | None:
    if os.environ.get("RTA_NO_DEVSERVICES") or not shutil.which("java") or not LAUNCHER.exists():
        return None
    status = subprocess.run([str(LAUNCHER), "status", name], capture_output=True, text=True, check=False)
    was_running = "running" in status.stdout
    done = subprocess.run(
        [str(LAUNCHER), "up", name], capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/devservices up {name} failed:\n{done.stderr[-3000:]}")
    env = {}
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    if was_running:
        return Endpoint(env)
    return Endpoint(
        env, stop=lambda: subprocess.run([str(LAUNCHER), "down", name], check=False, capture_output=True)
    )


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _from_testcontainers(name: str) -> Endpoint | None:
    if not _docker_available():
        return None
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    if name == "ignite":
        container = DockerContainer("apacheignite/ignite:2.16.0").with_exposed_ports(10800)
        container.start()
        wait_for_logs(container, "Topology snapshot", timeout=180)
        env = {
            "IGNITE_HOST": container.get_container_host_ip(),
            "IGNITE_PORT": str(container.get_exposed_port(10800)),
        }
    elif name == "pulsar":
        container = (
            DockerContainer("apachepulsar/pulsar:4.0.7")
            .with_command("bin/pulsar standalone -nfw -nss")
            .with_exposed_ports(6650, 8080)
        )
        container.start()
        wait_for_logs(container, "messaging service is ready", timeout=240)
        host = container.get_container_host_ip()
        env = {
            "PULSAR_URL": f"pulsar://{host}:{container.get_exposed_port(6650)}",
            "PULSAR_ADMIN_URL": f"http://{host}:{container.get_exposed_port(8080)}",
        }
    else:
        container = DockerContainer("cassandra:5.0").with_exposed_ports(9042)
        container.start()
        wait_for_logs(container, "Starting listening for CQL clients", timeout=240)
        env = {
            "CASSANDRA_HOSTS": container.get_container_host_ip(),
            "CASSANDRA_PORT": str(container.get_exposed_port(9042)),
        }
    return Endpoint(env, stop=container.stop)


KEYS = {
    "ignite": ("IGNITE_HOST", "IGNITE_PORT", "IGNITE_PORTS"),
    "pulsar": ("PULSAR_URL", "PULSAR_ADMIN_URL"),
    "cassandra": ("CASSANDRA_HOSTS", "CASSANDRA_PORT"),
}


def find(name: str) -> Endpoint:
    """The server `name`, found or started; raises RuntimeError saying how to start it."""
    env = _from_env(KEYS[name])
    if env is not None:
        return Endpoint(env)
    for way in (_from_launcher, _from_testcontainers):
        endpoint = way(name)
        if endpoint is not None:
            return endpoint
    raise RuntimeError(
        f"no {name} server for this integration test: " + HOW.format(name=name, vars="/".join(KEYS[name][:2]))
    )
