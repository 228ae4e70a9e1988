"""The profiles parley ships; ``[profiles.NAME]`` in the settings adds or replaces them."""

from __future__ import annotations

from parley.config import ProfileConfig, Settings
from parley.errors import ValidationFailed

BUILTIN_PROFILES = {
    "generalist": ProfileConfig(
        system_prompt="You are a helpful assistant.", tools=["*"], description="every tool"
    ),
    "todo": ProfileConfig(
        system_prompt=(
            "You are a task assistant. Use the todo tools to add, list, update, complete and "
            "delete the user's tasks. Confirm what you did in one short sentence."
        ),
        tools=["add_task", "list_tasks", "update_task", "complete_task", "delete_task", "todo__*"],
        description="the todo tools and a task-assistant prompt",
    ),
}


def find_profile(settings: Settings, name: str | None) -> ProfileConfig | None:
    """The profile ``name`` (the settings' before the built-ins); an unknown name is a 400."""
    if name is None:
        return None
    profile = settings.profiles.get(name) or BUILTIN_PROFILES.get(name)
    if profile is None:
        raise ValidationFailed(f"unknown profile {name!r}")
    return profile
