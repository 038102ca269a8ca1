"""Keep every page under the router in Home.py.

Streamlit starts in its legacy multipage mode when a `pages/` folder sits next to the entry
script, and leaves it only once `st.navigation` runs. So if the first request a fresh
server gets is a page URL (a bookmarked `/monitor?run=...`), that page would run on its own:
no wide layout, a sidebar listing raw file names. Each page calls `require_router()` first;
in that case it turns the legacy mode off and reruns, which goes through Home.py and lands on
the same page. (Uses Streamlit's `PagesManager.uses_pages_directory` flag, the one
`st.navigation` itself clears.) AppTest resets that flag before every run it makes, so
under AppTest the guard stands aside; a rerun there would swallow a button's click.
"""
from __future__ import annotations

import streamlit as st


def require_router() -> None:
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not config.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()
