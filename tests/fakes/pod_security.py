"""Pod Security admission for the fake cluster: the ``restricted`` profile of the Pod Security Standards.

Written from the Pod Security Standards page (kubernetes.io/docs/concepts/security/pod-security-standards)
and the checks of k8s.io/pod-security-admission (policy/check_*.go), whose wording the messages follow.
``restricted`` includes ``baseline``; of baseline, the checks a pod spec of ours could trip are here
(privileged, host namespaces, host ports, hostPath through the volume types). Each check gives
``(reason, detail)``; the API server joins them, sorted by check id as the real registry runs them, into::

    pods "NAME" is forbidden: violates PodSecurity "restricted:latest": REASON (DETAIL), REASON (DETAIL)

A namespace opts in with the label ``pod-security.kubernetes.io/enforce: restricted``; pods are refused at
create (403 Forbidden). Workload objects (Deployments, Jobs) are not refused: their controllers fail to
create pods (a ReplicaSet's ``FailedCreate``).
"""

from __future__ import annotations

from collections.abc import Callable

ENFORCE = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
# Volume sources the restricted profile allows ("Volume Types"); any other source is refused.
ALLOWED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
ALLOWED_SECCOMP = ("RuntimeDefault", "Localhost")
_NOT_SOURCES = frozenset({"name"})


def _containers(spec: dict) -> list[dict]:
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def _named(names: list[str]) -> str:
    """``container "a"`` or ``containers "a", "b"``, as the admission messages say."""
    quoted = ", ".join(f'"{name}"' for name in names)
    return f"{'container' if len(names) == 1 else 'containers'} {quoted}"


def _context(container: dict) -> dict:
    return container.get("securityContext") or {}


def _allow_privilege_escalation(spec: dict) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(spec) if _context(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return (
            "allowPrivilegeEscalation != false",
            f"{_named(bad)} must set securityContext.allowPrivilegeEscalation=false",
        )
    return None


def _capabilities(spec: dict) -> tuple[str, str] | None:
    missing_drop, adding, added = [], [], set()
    for container in _containers(spec):
        capabilities = _context(container).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(container["name"])
        forbidden = [capability for capability in capabilities.get("add") or [] if capability != "NET_BIND_SERVICE"]
        if forbidden:
            adding.append(container["name"])
            added.update(forbidden)
    details = []
    if missing_drop:
        details.append(f'{_named(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        quoted = ", ".join(f'"{capability}"' for capability in sorted(added))
        details.append(f"{_named(adding)} must not include {quoted} in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def _host_namespaces(spec: dict) -> tuple[str, str] | None:
    shared = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    return ("host namespaces", ", ".join(shared)) if shared else None


def _host_ports(spec: dict) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(spec) if any(port.get("hostPort") for port in c.get("ports") or [])]
    return ("hostPort", f"{_named(bad)} uses hostPorts") if bad else None


def _privileged(spec: dict) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(spec) if _context(c).get("privileged")]
    return ("privileged", f"{_named(bad)} must not set securityContext.privileged=true") if bad else None


def _restricted_volumes(spec: dict) -> tuple[str, str] | None:
    bad = sorted(
        volume["name"] for volume in spec.get("volumes") or [] if not (set(volume) - _NOT_SOURCES) <= ALLOWED_VOLUMES
    )
    if bad:
        quoted = " ".join(f'"{name}"' for name in bad)  # Go's %q of a list of names
        return "restricted volume types", f"volumes [{quoted}] have restricted types"
    return None


def _pod_and_containers(spec: dict, field: str, good, refused, required: str, reason: str):
    """The shape of runAsNonRoot and seccompProfile: set on the pod, or on every container that does not.
    ``refused(bad values)`` says what the pod or a container must not set."""
    pod_value = (spec.get("securityContext") or {}).get(field)
    pod_ok = pod_value is not None and good(pod_value)
    setters, bad_values = (["pod"], [pod_value]) if pod_value is not None and not pod_ok else ([], [])
    explicit = [c for c in _containers(spec) if _context(c).get(field) is not None and not good(_context(c)[field])]
    implicit = [c["name"] for c in _containers(spec) if _context(c).get(field) is None and not pod_ok]
    if explicit:
        setters.append(_named([c["name"] for c in explicit]))
        bad_values += [_context(c)[field] for c in explicit]
    if setters:
        return reason, f"{' and '.join(setters)} must not set securityContext.{refused(bad_values)}"
    if implicit:
        return reason, f"pod or {_named(implicit)} must set securityContext.{required}"
    return None


def _run_as_non_root(spec: dict) -> tuple[str, str] | None:
    return _pod_and_containers(
        spec,
        "runAsNonRoot",
        lambda value: value is True,
        lambda values: "runAsNonRoot=false",
        "runAsNonRoot=true",
        "runAsNonRoot != true",
    )


def _run_as_user(spec: dict) -> tuple[str, str] | None:
    setters = ["pod"] if (spec.get("securityContext") or {}).get("runAsUser") == 0 else []
    bad = [c["name"] for c in _containers(spec) if _context(c).get("runAsUser") == 0]
    if bad:
        setters.append(_named(bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_profile(spec: dict) -> tuple[str, str] | None:
    return _pod_and_containers(
        spec,
        "seccompProfile",
        lambda profile: (profile or {}).get("type") in ALLOWED_SECCOMP,
        lambda profiles: (
            "seccompProfile.type to " + ", ".join(sorted({f'"{(profile or {}).get("type")}"' for profile in profiles}))
        ),
        'seccompProfile.type to "RuntimeDefault" or "Localhost"',
        "seccompProfile",
    )


# check id -> check, run in id order as the admission plugin's registry does
CHECKS: dict[str, Callable[[dict], tuple[str, str] | None]] = {
    "allowPrivilegeEscalation": _allow_privilege_escalation,
    "capabilities_restricted": _capabilities,
    "hostNamespaces": _host_namespaces,
    "hostPorts": _host_ports,
    "privileged": _privileged,
    "restrictedVolumes": _restricted_volumes,
    "runAsNonRoot": _run_as_non_root,
    "runAsUser": _run_as_user,
    "seccompProfile_restricted": _seccomp_profile,
}


def restricted_violations(spec: dict) -> list[str]:
    """``REASON (DETAIL)`` for every restricted check the pod spec fails; empty when it passes."""
    return [
        f"{reason} ({detail})"
        for check in sorted(CHECKS)
        if (found := CHECKS[check](spec))
        for reason, detail in [found]
    ]


def forbidden_message(pod_name: str, namespace_labels: dict, spec: dict) -> str | None:
    """The API server's refusal of a pod in a namespace with these labels, or None when it is admitted."""
    if namespace_labels.get(ENFORCE) != "restricted":
        return None
    violations = restricted_violations(spec)
    if not violations:
        return None
    version = namespace_labels.get(ENFORCE_VERSION, "latest")
    return f'pods "{pod_name}" is forbidden: violates PodSecurity "restricted:{version}": {", ".join(violations)}'
