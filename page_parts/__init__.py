"""Streamlit pieces that pages share (Review's two views draw the same mark control); like the pages,
they read widgets, call agelab and draw. Not a folder of pages: Streamlit lists every file of pages/."""
