"""Artist names in Chromium against the dev stack (issue 11): the demo artists signed their names at start-up, the
catalog and the artist page show them once the browser has verified each signature, and an artist signs a new
name in the studio (one wallet signature) that the listener's page then shows."""

from __future__ import annotations

import re
from typing import Any

import pytest

from chainstream.seed import ARTIST_NAMES
from tests.e2e.stack import Stack
from tests.e2e.test_player import connect, expect, open_page, tile

pytestmark = [pytest.mark.browser, pytest.mark.anvil, pytest.mark.xdist_group("browser")]


def test_the_catalog_and_the_artist_page_show_the_names_the_artists_signed(browser: Any, stack: Stack) -> None:
    """A listener sees "Ada Modem", not 0x…, on Ada's tile, in the player and on her page."""
    page = open_page(browser, stack, "listener")
    modem = tile(page, "Morning Modem")
    expect(modem.get_by_test_id("artist-link")).to_have_text(re.compile(f"^{re.escape(ARTIST_NAMES['ada'])}"))
    owner = modem.get_attribute("data-owner")
    assert owner == stack.address("ada")
    modem.get_by_test_id("artist-link").click()
    expect(page.get_by_test_id("artist-name")).to_have_text(ARTIST_NAMES["ada"])
    page.close()


def test_an_artist_signs_a_new_name_in_the_studio_and_listeners_see_it(browser: Any, stack: Stack) -> None:
    """Ben renames himself in the studio; a listener's page, loaded afterwards, shows the new name."""
    studio = open_page(browser, stack, "ben", "/#/studio")
    connect(studio)
    expect(studio.get_by_test_id("studio-name")).to_have_text(ARTIST_NAMES["ben"])
    studio.get_by_test_id("name-input").fill("Ben Baudot")
    studio.get_by_test_id("set-name").click()
    expect(studio.get_by_test_id("studio-name")).to_have_text("Ben Baudot")
    studio.close()
    assert stack.get(f"/api/v1/artists/{stack.address('ben')}/profile")["name"] == "Ben Baudot"

    page = open_page(browser, stack, "listener")
    ben_tracks = [t["title"] for t in stack.get("/api/v1/catalog")["tracks"] if t["owner"] == stack.address("ben")]
    assert ben_tracks
    expect(tile(page, ben_tracks[0]).get_by_test_id("artist-link")).to_have_text(re.compile("^Ben Baudot"))
    page.close()
