"""Prompt parsing of the rules planner: scenes, clauses, noun phrases and the words around a verb."""

import pytest

from core.planner.parse import (
    analyse_clause,
    find_mentions,
    load_parser,
    places_per_subject,
    position_of,
    predicate_of,
    split_clauses,
    split_scenes,
)


def clauses_of(sentence: str):
    (span,) = list(load_parser()(sentence).sents)
    return split_clauses(span)


def analysed(sentence: str):
    (clause,) = clauses_of(sentence)
    analyse_clause(clause)
    return clause


def test_a_scene_word_opens_a_new_scene():
    scenes = split_scenes("A red ball rolls. In the next scene, a blue star falls. It rises.", load_parser())
    assert [len(sentences) for sentences in scenes] == [1, 2]


@pytest.mark.parametrize(
    "sentence, concurrent, before_previous",
    [
        ("A red ball rolls to the right while a blue star falls.", True, False),
        ("A red ball rolls to the right after a blue star falls.", False, True),
        ("A red ball rolls to the right, then a blue star falls.", False, False),
    ],
)
def test_a_connective_sets_the_second_clause_in_time(sentence, concurrent, before_previous):
    _, second = clauses_of(sentence)
    assert (second.concurrent, second.before_previous) == (concurrent, before_previous)


def test_a_participle_is_a_concurrent_clause():
    _, second = clauses_of("A woman sits on a chair drinking coffee.")
    assert second.tokens[0].text == "drinking" and second.concurrent


def test_a_verb_chain_is_cut_into_sequential_clauses():
    assert len(clauses_of("A chef puts a pan on the stove, takes a bottle of water and walks to the left.")) == 3


def test_a_number_word_makes_a_counted_mention():
    (mention,) = find_mentions(list(load_parser()("Two red squares slide.")))
    assert (mention.name, mention.head, mention.color, mention.count) == ("square", "square", "red", 2)


def test_x_of_y_keeps_its_words_and_the_head_of_x():
    (mention,) = find_mentions(list(load_parser()("the big blue bottle of water")))
    assert (mention.name, mention.head, mention.attributes, mention.definite) == ("big bottle of water", "bottle", {"size": "big"}, True)


def test_from_and_to_give_source_and_goal():
    clause = analysed("A red ball rolls from the left to the top right.")
    assert (clause.verb, clause.source, clause.goal) == ("roll", (0.2, None), (0.8, 0.22))


def test_a_relation_names_its_target_mention():
    clause = analysed("A yellow star is above a green square.")
    relation, (target,) = clause.relation
    assert (relation, target.head) == ("above", "square")


def test_a_colour_after_turn_is_the_colour_target():
    assert analysed("A pink cross turns blue.").color_target == "blue"


def test_a_pronoun_subject_and_a_direction_word():
    clause = analysed("It falls down.")
    assert (clause.subjects, clause.pronoun_subject, clause.direction) == ([], "it", (0, 1))


def test_a_place_noun_is_the_background_not_an_object():
    clause = analysed("A man walks out of the kitchen.")
    assert (clause.background, clause.objects) == ("kitchen", [])


def test_the_predicate_keeps_a_particle():
    assert predicate_of(analysed("A man walks out of the kitchen.")) == "walks out of"


def test_each_subject_takes_the_place_word_after_it():
    clause = analysed("A white ring on the left and an orange diamond on the right sit still.")
    assert places_per_subject(clause) == [(0.2, None), (0.8, None)]


@pytest.mark.parametrize(
    "words, position",
    [(["top", "left"], (0.2, 0.22)), (["center", "left"], (0.2, 0.5)), (["left", "center"], (0.2, 0.5)), (["the"], None)],
)
def test_position_words_combine_per_axis(words, position):
    assert position_of(words) == position
