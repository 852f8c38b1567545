"""What a model endpoint may send where: the operator's rules for API-key variables and outbound hosts.

An endpoint is configured by project members, but its calls are made by the server (web process for "Test
connection", workers for judge and generation jobs, the training process for rewards) with the server's environment.
So the operator, not the members, decides which environment variables may travel as `Authorization: Bearer ...` and
which hosts may be called. Both rules are plain functions here (no Django) so that every layer that reads a key or
opens a connection checks the same way: the endpoint service when a row is saved, and again right before the call,
because a row written before the rule existed must not leak either.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

# Default allow-patterns for `api_key_env` (operator setting RUBRICON_ENDPOINT_KEY_VARS overrides them).
DEFAULT_KEY_VAR_PATTERNS: tuple[str, ...] = ("*_API_KEY", "*_TOKEN")
# Never sent to a model server, whatever the operator allows: the app's own secrets and infrastructure credentials.
DENIED_KEY_VAR_PATTERNS: tuple[str, ...] = (
    "DJANGO_*", "RUBRICON_*", "DATABASE_*", "POSTGRES*", "PG*", "MYSQL_*", "CELERY_*", "REDIS_*", "BROKER_*",
    "AMQP_*", "RABBITMQ_*", "FLOWER_*", "AWS_*", "AMAZON_*", "GOOGLE_*", "GCP_*", "GCLOUD_*", "CLOUDSDK_*",
    "AZURE_*", "ARM_*", "KUBE*", "SSH_*", "GITHUB_*", "GH_*", "GITLAB_*", "CI_*", "VAULT_*", "SENTRY_*",
    "*SECRET_KEY*", "*PASSWORD*", "*PRIVATE_KEY*",
)
KEY_VARS_ENV = "RUBRICON_ENDPOINT_KEY_VARS"
HOSTS_ENV = "RUBRICON_ENDPOINT_HOSTS"
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class OutboundRefused(ValueError):
    """A key variable, host or model path the operator's rules refuse; `field` names the endpoint field to fix."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _patterns(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item and item.strip())


def key_var_patterns_from_environ(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The allow-patterns of a process that has no Django settings (the training process)."""
    return _patterns(environ.get(KEY_VARS_ENV)) or DEFAULT_KEY_VAR_PATTERNS


def hosts_from_environ(environ: Mapping[str, str]) -> tuple[str, ...]:
    return _patterns(environ.get(HOSTS_ENV))


def key_var_allowed(name: str, *, allowed: Sequence[str]) -> bool:
    if not ENV_NAME_RE.match(name):
        return False
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in DENIED_KEY_VAR_PATTERNS):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed)


def key_var_check(name: str, *, allowed: Sequence[str]) -> None:
    """Refuse `name` unless it matches an allow-pattern and no always-denied pattern."""
    if key_var_allowed(name, allowed=allowed):
        return
    raise OutboundRefused(
        f"${name} may not be sent to a model server. The operator allows variables named {' or '.join(allowed)} "
        f"({KEY_VARS_ENV}); the app's own and infrastructure credentials (DJANGO_*, DATABASE_*, CELERY_*, REDIS_*, "
        "AWS_*, GOOGLE_*, AZURE_*, ...) are never allowed.",
        field="api_key_env",
    )


def _host_matches(host: str, entry: str) -> bool:
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        network = None
    if network is not None:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False  # a name is never matched by a CIDR: resolving it here would not bind the later connect
    entry = entry.lower().rstrip(".")
    if entry.startswith("*."):
        return host.endswith(entry[1:]) and host != entry[2:]
    return host == entry


def url_host_check(url: str, *, allowed_hosts: Sequence[str]) -> None:
    """Refuse a URL whose host is not on the operator's list. An empty list allows any host (self-hosted default).

    Entries are host names (`gpu-node`, `*.internal`), IP addresses or CIDRs (`10.0.0.0/8`); a CIDR matches only a
    URL that names an IP address, never a name (a name could resolve elsewhere at connect time)."""
    if not allowed_hosts:
        return
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        host = ""
    if host and any(_host_matches(host, entry) for entry in allowed_hosts):
        return
    raise OutboundRefused(
        f"The host {host or url!r} is not on the operator's list of model servers ({HOSTS_ENV}: "
        f"{', '.join(allowed_hosts)}). Ask the operator to add it, or use a listed server.",
        field="base_url",
    )
