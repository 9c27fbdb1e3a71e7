"""A target table for the work-values survey: three invented profiles, resolved by code or name."""

from __future__ import annotations

from promptopt.objectives import Target, TargetTable, UnknownTargetError

SOURCE = "promptopt-example-plugin: invented profiles, for demonstration only"

PROFILES = (
    Target("autonomy", "Autonomy seeker", {"AUT": 80.0, "SEC": 30.0}, SOURCE, kind="profile"),
    Target("security", "Security seeker", {"AUT": 30.0, "SEC": 85.0}, SOURCE, kind="profile"),
    Target("balanced", "Balanced", {"AUT": 50.0, "SEC": 50.0}, SOURCE, kind="profile"),
)


def resolve(query: str) -> Target:
    """The profile whose code or name matches ``query`` (case-insensitive)."""
    key = str(query).strip().casefold()
    for target in PROFILES:
        if key in (target.code, target.name.casefold()):
            return target
    raise UnknownTargetError(f"unknown work-values profile {query!r}; choose one of "
                             f"{', '.join(t.code for t in PROFILES)}")


def list_profiles() -> list[Target]:
    return list(PROFILES)


def workvalues_table() -> TargetTable:
    """Registered as target table ``workvalues`` (select it with ``targets = "workvalues"``)."""
    return TargetTable("workvalues", SOURCE, resolve, list_profiles)
