"""What the toy model cannot draw is flagged at its field, and the background field is what renders."""

from core.plan import parse_plan
from core.render import DEFAULT_MODEL, read_model_index, scene_prompt
from core.toyworld.world import BACKGROUNDS
from core.vocabulary import Vocabulary, model_vocabulary, plan_warnings
from tests.core.plan.test_plan import make_plan

TOY = model_vocabulary(read_model_index(DEFAULT_MODEL))


def plan_with(kind="ball", color="red", background="grass", description="A red ball rolls right."):
    data = make_plan(background=background, description=description)
    data["entities"][0].update(kind=kind, attributes={"color": color})
    return parse_plan(data)


def test_the_shipped_model_knows_the_toy_world():
    assert TOY.kinds[:2] == ("ball", "square") and "teal" not in TOY.colors and set(TOY.backgrounds) == set(BACKGROUNDS)
    assert model_vocabulary({}) == Vocabulary()  # an open-domain backbone restricts nothing


def test_a_known_plan_has_no_warnings():
    assert plan_warnings(plan_with(), TOY) == []


def test_unknown_kind_colour_and_background_are_flagged_with_what_the_model_knows():
    warnings = plan_warnings(plan_with(kind="dragon", color="teal", background="beach"), TOY)
    assert warnings == [
        "entities[0].kind: 'dragon' is not a kind this model knows (ball, square, triangle, star, heart, ring, diamond, cross)",
        "entities[0].attributes.color: 'teal' is not a colour this model knows (red, orange, yellow, green, blue, purple, pink, white)",
        "scenes[0].background: 'beach' is not a background this model knows (sky, grass, desert, night, ocean, snow)",
    ]
    assert plan_warnings(plan_with(kind="dragon"), Vocabulary()) == []


def test_a_description_that_places_the_scene_elsewhere_is_flagged_and_the_field_renders():
    plan = plan_with(background="ocean", description="A red ball rolls across the desert.")
    assert plan_warnings(plan, TOY) == ["scenes[0].description: names 'desert' but the background is 'ocean' (the background renders)"]
    assert scene_prompt(plan, 0, list(BACKGROUNDS)) == "the ocean: A red ball rolls across the ocean."


def test_a_description_that_also_names_its_own_background_is_left_alone():
    plan = plan_with(background="ocean", description="A red ball falls from the sky into the ocean.")
    assert plan_warnings(plan, TOY) == []
    assert scene_prompt(plan, 0, list(BACKGROUNDS)) == "the ocean: A red ball falls from the sky into the ocean."


def test_the_night_sky_is_read_as_the_night_so_the_model_reads_one_background():
    plan = plan_with(background="night", description="A blue star falls from the top of the Night sky to the bottom.")
    assert plan_warnings(plan, TOY) == []
    assert scene_prompt(plan, 0, list(BACKGROUNDS)) == "the night: A blue star falls from the top of the Night to the bottom."
