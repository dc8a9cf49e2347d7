import pytest

from touchpoint.collect.plan import TrackingPlan
from touchpoint.core.config_sources import TrackingPlanConfig
from touchpoint.core.errors import DefinitionError

PLAN = TrackingPlanConfig.model_validate(
    {
        "allow_unplanned": False,
        "events": {
            "Order Completed": {
                "properties": {
                    "type": "object",
                    "required": ["revenue"],
                    "properties": {"revenue": {"type": "number", "minimum": 0}},
                }
            },
            "Home": {"properties": {"type": "object", "properties": {"path": {"type": "string"}}}},
        },
        "identify_traits": {"type": "object", "properties": {"age": {"type": "integer"}}},
    }
)


def track(name: str, properties: dict) -> dict:
    return {"type": "track", "event": name, "properties": properties}


def test_conforming_events_have_no_violations() -> None:
    plan = TrackingPlan(PLAN)
    assert plan.violations(track("Order Completed", {"revenue": 10})) == []
    assert plan.violations({"type": "page", "name": "Home", "properties": {"path": "/"}}) == []
    assert plan.violations({"type": "alias"}) == []


def test_violations_name_the_field() -> None:
    plan = TrackingPlan(PLAN)
    assert plan.violations(track("Order Completed", {"revenue": -1})) == [
        {"field": "properties.revenue", "reason": "-1 is less than the minimum of 0"}
    ]
    missing = plan.violations(track("Order Completed", {}))
    assert missing[0]["field"] == "properties"
    assert "revenue" in missing[0]["reason"]
    assert (
        plan.violations({"type": "identify", "traits": {"age": "old"}})[0]["field"] == "traits.age"
    )


def test_unplanned_events_are_violations_only_when_the_plan_says_so() -> None:
    assert TrackingPlan(PLAN).violations(track("Mystery", {}))[0]["field"] == "event"
    relaxed = TrackingPlanConfig.model_validate({"allow_unplanned": True})
    assert TrackingPlan(relaxed).violations(track("Mystery", {})) == []


def test_a_bad_schema_is_refused_with_its_path() -> None:
    bad = TrackingPlanConfig.model_validate(
        {"events": {"X": {"properties": {"type": "object", "properties": {"a": {"type": 5}}}}}}
    )
    with pytest.raises(DefinitionError) as caught:
        TrackingPlan(bad)
    assert caught.value.path.startswith("tracking_plan.events.X.properties")
