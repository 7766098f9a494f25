"""The claims audit (book/claims_audit.md): one card per claim, and a summary that agrees.

Each claim is a card: ``(claim-N)=`` then ``:::{card} N. <claim>`` with a
verdict badge, the articles, the primary source, the real figure and the
course's evidence.  The summary table near the top lists every claim once,
under its card's verdict, so a verdict changed in a card must be changed there
too.
"""

import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).resolve().parents[1] / "book" / "claims_audit.md"
BADGES = {"supported": "bdg-success", "partly supported": "bdg-warning",
          "unsupported: no source found": "bdg-muted", "wrong: contradicted": "bdg-danger"}
FIELDS = ("**Article(s):**", "**Primary source:**", "**Real figure / note:**",
          "**Course evidence:**")
CARD = re.compile(r"^\(claim-(\d+)\)=\n:::\{card\} (\d+)\. (.+?)\n(.*?)^:::$", re.M | re.S)
BADGE = re.compile(r"\{(bdg-\w+)\}`([^`]+)`")


def cards(text):
    return [(int(label), int(number), claim, body)
            for label, number, claim, body in CARD.findall(text)]


def summary(text):
    """Verdict -> claim numbers, from the summary table's rows."""
    table = text.split("```{list-table} Every claim's verdict", 1)[1].split("```", 1)[0]
    rows = {}
    for verdict_cell, claims_cell in re.findall(r"^\* - (.+)\n  - (.+)$", table, re.M):
        badge = BADGE.search(verdict_cell)
        if badge:
            count = int(re.search(r"\((\d+)\)\s*$", verdict_cell).group(1))
            numbers = [int(n) for n in re.findall(r"\{ref\}`(\d+) <claim-\1>`", claims_cell)]
            rows[badge.group(2)] = (badge.group(1), count, numbers)
    return rows


TEXT = PAGE.read_text()


def test_no_wide_tables_of_claims_are_left():
    # seven columns do not fit a laptop's text column, let alone a phone's
    for table in re.findall(r"```\{list-table\}.*?```", TEXT, re.S):
        assert ":widths: 4 22 7 11 14 30 12" not in table


def test_claims_are_numbered_one_card_each():
    found = cards(TEXT)
    assert len(found) >= 50
    assert [label for label, *_ in found] == list(range(1, len(found) + 1))
    assert all(label == number for label, number, *_ in found)


@pytest.mark.parametrize("card", cards(TEXT), ids=lambda c: f"claim-{c[0]}")
def test_every_card_has_a_verdict_and_every_field(card):
    number, _, claim, body = card
    assert claim.strip()
    badge = BADGE.search(body)
    assert badge, f"claim {number}: no verdict badge"
    colour, verdict = badge.groups()
    assert verdict in BADGES, f"claim {number}: verdict {verdict!r} is not one of {list(BADGES)}"
    assert colour == BADGES[verdict], f"claim {number}: {verdict!r} wears {colour}"
    for field in FIELDS:
        assert field in body, f"claim {number} has no {field}"


def test_summary_lists_every_claim_once_under_its_cards_verdict():
    verdicts = {number: BADGE.search(body).group(2) for number, _, _, body in cards(TEXT)}
    rows = summary(TEXT)
    assert set(rows) == set(BADGES)
    listed = [n for _, _, numbers in rows.values() for n in numbers]
    assert sorted(listed) == sorted(verdicts), "every claim appears exactly once"
    for verdict, (colour, count, numbers) in rows.items():
        assert colour == BADGES[verdict]
        assert count == len(numbers), f"{verdict}: says {count}, lists {len(numbers)}"
        wrong = [n for n in numbers if verdicts[n] != verdict]
        assert not wrong, f"claims {wrong} are listed as {verdict!r} but their cards say otherwise"
